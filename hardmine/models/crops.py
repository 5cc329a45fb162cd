"""How the network sees a window: the single definition of normalization and cropping.

Training crops, per-window scoring and dense scoring all go through these functions, so a window
looks the same to the network whichever path scored it.
"""

import math

import numpy as np
import torch
from torchvision.ops import roi_align

from hardmine.models.errors import ModelError

CROP_SIZE_PX = 64  # side of the square crop the network classifies
STRIDE_PX = 16  # network stride, in crop pixels: dense outputs are this far apart
MAX_SAMPLING_RATIO = 4  # caps antialiasing cost for windows over 4x the crop size

# ImageNet statistics, on the 0-1 scale: any fixed values work, these suit pretrained trunks.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Turns a uint8 RGB image into the float input the networks expect.

    Args:
        image: (3, H, W) or (H, W, 3) uint8, numpy array or tensor. A (3, H, 3) image is read as
            channels first.

    Returns:
        (3, H, W) float32, each channel standardized with `MEAN` and `STD`.
    """
    return standardize(channels_first(image))


def channels_first(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Checks a uint8 RGB image and returns it as a (3, H, W) tensor (a view when possible).

    Args:
        image: (3, H, W) or (H, W, 3) uint8, numpy array or tensor.

    Returns:
        (3, H, W) uint8.
    """
    image = torch.as_tensor(image)
    if image.dtype != torch.uint8 or image.ndim != 3 or 3 not in (image.shape[0], image.shape[2]):
        raise ModelError(
            f"expected a uint8 RGB image shaped (3, H, W) or (H, W, 3), got {image.dtype} "
            f"{tuple(image.shape)}; decode images to 8-bit RGB before scoring or training"
        )
    return image if image.shape[0] == 3 else image.permute(2, 0, 1)


def standardize(pixels: torch.Tensor) -> torch.Tensor:
    """Standardizes uint8 or 0-255 float pixels channel by channel.

    Args:
        pixels: (..., 3, H, W), values 0-255 (a single image or a batch of crops).

    Returns:
        (..., 3, H, W) float32.
    """
    mean = torch.tensor(MEAN, device=pixels.device).view(3, 1, 1) * 255
    std = torch.tensor(STD, device=pixels.device).view(3, 1, 1) * 255
    return (pixels.float() - mean) / std


def sampling_ratio(width_px: float, height_px: float) -> int:
    """Samples per crop pixel along each axis: antialiasing for windows larger than the crop.

    Args:
        width_px: window width in image pixels.
        height_px: window height in image pixels.

    Returns:
        ceil(max(w, h) / CROP_SIZE_PX), clamped to 1-4.
    """
    ratio = math.ceil(max(width_px, height_px) / CROP_SIZE_PX)
    return min(max(ratio, 1), MAX_SAMPLING_RATIO)


def check_boxes(boxes: torch.Tensor, what: str = "boxes") -> torch.Tensor:
    """Checks that boxes are (N, 4) xyxy with positive width and height.

    Args:
        boxes: (N, 4) xyxy, pixels.
        what: the name the caller knows the boxes by, for the message.

    Returns:
        The boxes as a float tensor.
    """
    boxes = torch.as_tensor(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ModelError(f"expected {what} shaped (N, 4) xyxy, got {tuple(boxes.shape)}")
    boxes = boxes.float() if not boxes.is_floating_point() else boxes

    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        first = int(bad.nonzero()[0])
        raise ModelError(
            f"{what}[{first}] = {boxes[first].tolist()} has x2 <= x1 or y2 <= y1; "
            "boxes are [x1, y1, x2, y2] in pixels with x2, y2 exclusive"
        )
    return boxes


def check_image(image: torch.Tensor) -> torch.Tensor:
    """Checks that an image is normalized float (3, H, W), normalizing uint8 on the way.

    Args:
        image: (3, H, W) float from `normalize`, or uint8 (normalized here).

    Returns:
        (3, H, W) float.
    """
    image = torch.as_tensor(image)
    if image.dtype == torch.uint8:
        return normalize(image)
    if not image.is_floating_point() or image.ndim != 3 or image.shape[0] != 3:
        raise ModelError(
            f"expected an image shaped (3, H, W), float from normalize() or uint8, got "
            f"{image.dtype} {tuple(image.shape)}"
        )
    return image


def crop_windows(image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Cuts each window out of an image and resamples it to the crop size.

    Bilinear RoIAlign (aligned=True) with `sampling_ratio(w, h)` samples per crop pixel and axis,
    so a window larger than the crop is averaged rather than aliased.

    Args:
        image: (3, H, W) float, normalized (any float image works: the op is linear).
        boxes: (N, 4) xyxy, pixels, x2 and y2 exclusive; may reach outside the image.

    Returns:
        (N, 3, CROP_SIZE_PX, CROP_SIZE_PX), same dtype and device as the image.
    """
    boxes = check_boxes(boxes).to(image.device, image.dtype)
    crops = image.new_empty(len(boxes), 3, CROP_SIZE_PX, CROP_SIZE_PX)
    if len(boxes) == 0:
        return crops

    # One RoIAlign call per sampling ratio: the ratio is a per-call argument.
    sizes = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values
    ratios = (sizes / CROP_SIZE_PX).ceil().clamp(1, MAX_SAMPLING_RATIO).long()
    for ratio in ratios.unique().tolist():
        chosen = (ratios == ratio).nonzero().squeeze(1)
        crops[chosen] = roi_align(
            image[None], [boxes[chosen]], CROP_SIZE_PX, 1.0, int(ratio), aligned=True
        )
    return crops
