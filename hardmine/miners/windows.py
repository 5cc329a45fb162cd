"""Candidate windows: their shapes, from the dataset's objects, and which ones are background.

The scorer places windows of each shape on a grid (a quarter-window stride, see
`hardmine.models.scoring`); this module picks the shapes and tells background from object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from hardmine.errors import HardmineError

WindowShape = tuple[float, float]  # (width, height), pixels


@dataclass(frozen=True)
class WindowConfig:
    """Which window shapes a mining pass scores."""

    # Window sizes (sqrt(w * h), pixels). Empty: `size_count` quantiles of the dataset's
    # object sizes.
    sizes_px: tuple[float, ...] = ()
    # Aspect ratios (w / h). Empty: `aspect_count` quantiles of the objects' ratios.
    aspect_ratios: tuple[float, ...] = ()
    # How many sizes and ratios to take from the object statistics when not given.
    size_count: int = 4
    aspect_count: int = 3
    # Sizes are clamped to this range (pixels), and narrow shapes are widened until their short
    # side reaches `min_size_px`: a window 9 px wide blows its pyramid level up 7x for an
    # object a 64 px crop barely resolves.
    min_size_px: float = 16.0
    max_size_px: float = 1024.0

    def __post_init__(self) -> None:
        if any(not s > 0 for s in self.sizes_px) or any(not a > 0 for a in self.aspect_ratios):
            raise HardmineError(
                f"window sizes and aspect ratios must be positive, got sizes {self.sizes_px} "
                f"and ratios {self.aspect_ratios}"
            )
        if self.size_count < 1 or self.aspect_count < 1:
            raise HardmineError("size_count and aspect_count must be at least 1")
        if not 0 < self.min_size_px <= self.max_size_px:
            raise HardmineError(
                f"need 0 < min_size_px <= max_size_px, got {self.min_size_px}, {self.max_size_px}"
            )


def window_shapes(config: WindowConfig, object_boxes: np.ndarray) -> list[WindowShape]:
    """The (w, h) shapes to score: sizes x aspect ratios, from `config` or the objects.

    Args:
        object_boxes: (N, 4) xyxy pixels, the dataset's objects (training split).
    """
    widths = object_boxes[:, 2] - object_boxes[:, 0] if len(object_boxes) else np.zeros(0)
    heights = object_boxes[:, 3] - object_boxes[:, 1] if len(object_boxes) else np.zeros(0)
    if (not config.sizes_px or not config.aspect_ratios) and len(object_boxes) == 0:
        raise HardmineError(
            "the dataset has no objects to derive window sizes from; pass --window-sizes and "
            "--aspect-ratios"
        )

    sizes = config.sizes_px or _quantiles(np.sqrt(widths * heights), config.size_count)
    ratios = config.aspect_ratios or _quantiles(widths / heights, config.aspect_count)
    sizes = sorted({round(min(max(s, config.min_size_px), config.max_size_px), 1) for s in sizes})
    ratios = sorted({round(r, 2) for r in ratios})
    shapes = []
    for size in sizes:
        for ratio in ratios:
            w, h = size * math.sqrt(ratio), size / math.sqrt(ratio)
            grow = max(1.0, config.min_size_px / min(w, h))
            shapes.append((round(w * grow, 2), round(h * grow, 2)))
    return sorted(set(shapes), key=lambda shape: (shape[0] * shape[1], shape[0]))


def _quantiles(values: np.ndarray, count: int) -> list[float]:
    """`count` quantiles at the centres of equal-mass bins (1 -> the median)."""
    levels = (np.arange(count) + 0.5) / count
    return [float(v) for v in np.quantile(values, levels)]


def background_mask(
    windows: torch.Tensor, objects: torch.Tensor, iou_bar: float = 0.3, max_cover: float = 1.0
) -> torch.Tensor:
    """True for windows whose IoU with every object is under `iou_bar` and, when `max_cover` is
    under 1, of which no object covers more than `max_cover` of the area.

    The cover bar matters for large objects: a small window on a large object's part has a
    small IoU with it, yet shows nothing but object.

    Args:
        windows: (N, 4) xyxy pixels.
        objects: (M, 4) xyxy pixels, all of the image's objects (ignored ones too); M may be 0,
            and then every window is background.

    Returns:
        (N,) bool.
    """
    if len(objects) == 0 or len(windows) == 0:
        return torch.ones(len(windows), dtype=torch.bool)
    windows, objects = windows.double(), objects.double()
    background = box_iou(windows, objects).max(dim=1).values < iou_bar
    if max_cover < 1.0:
        corner_low = torch.maximum(windows[:, None, :2], objects[None, :, :2])
        corner_high = torch.minimum(windows[:, None, 2:], objects[None, :, 2:])
        overlap = (corner_high - corner_low).clamp(min=0).prod(dim=2)
        area = (windows[:, 2:] - windows[:, :2]).prod(dim=1)
        background &= (overlap / area[:, None]).max(dim=1).values <= max_cover
    return background


def random_background_windows(
    shapes: Sequence[WindowShape],
    width: int,
    height: int,
    objects: torch.Tensor,
    count: int,
    generator: torch.Generator,
    iou_bar: float = 0.3,
    max_cover: float = 1.0,
) -> torch.Tensor:
    """Up to `count` windows of the given shapes at random positions, all background
    (`background_mask` with `iou_bar` and `max_cover`).

    Returns:
        (k, 4) xyxy pixels, k <= count (fewer when background is scarce: 20 tries per window).
    """
    fitting = [(w, h) for w, h in shapes if w <= width and h <= height]
    if not fitting or count <= 0:
        return torch.zeros(0, 4)

    tries = count * 20
    pick = torch.randint(len(fitting), (tries,), generator=generator)
    wh = torch.tensor(fitting, dtype=torch.float64)[pick]
    corner = torch.rand(tries, 2, generator=generator, dtype=torch.float64)
    x1 = corner[:, 0] * (width - wh[:, 0])
    y1 = corner[:, 1] * (height - wh[:, 1])
    boxes = torch.stack([x1, y1, x1 + wh[:, 0], y1 + wh[:, 1]], dim=1)
    return boxes[background_mask(boxes, objects, iou_bar, max_cover)][:count].float()
