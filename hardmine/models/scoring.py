"""Scoring windows: shared computation over a grid of windows, and the per-window reference.

The grid: for each window shape (w, h), windows at x1 = j * w / 4, y1 = i * h / 4 (a quarter of
the window, which is the network stride of 16 px at the 64 px crop scale), every one fully inside
the image. `WindowNet` scores the grid densely over an image pyramid; its scores equal
`crop_scores` on the same windows to within `DENSE_TOLERANCE`.

Why dense equals per-crop. For window shape (w, h) let s_x = 64 / w and r = sampling_ratio(w, h).
Resizing the image by r * s_x (bilinear, align_corners=False, antialias off, explicit scale)
puts destination pixel v at source (v + 0.5) / (r * s_x) - 0.5, and an r x r average pool then
gives level pixel p the mean of the samples at (p + (k + 0.5) / r) * w / 64 - 0.5, k < r. For the
window starting at level pixel 16 j, RoIAlign (aligned=True, sampling ratio r) samples crop pixel
q at x1 + (q + (k + 0.5) / r) * w / 64 - 0.5 with x1 = 16 j * w / 64: the same points, with the
same border clamping inside the image. Valid convolutions and even-aligned pooling then make
dense output (i, j) the crop's logit.
"""

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from hardmine.models.crops import (
    CROP_SIZE_PX,
    STRIDE_PX,
    check_boxes,
    check_image,
    crop_windows,
    sampling_ratio,
)
from hardmine.models.errors import ModelError

if TYPE_CHECKING:
    from hardmine.models.network import RoIWindowNet, WindowNet

DENSE_TOLERANCE = 1e-4  # max |dense - per-crop| score (probability) for the same window
GRID_STEPS_PER_WINDOW = CROP_SIZE_PX // STRIDE_PX  # 4: grid step is a quarter of the window

# Dense scoring runs the network on tiles of at most this many outputs per side (16 * 47 + 64 =
# 816 px): activations stay under about 45 MB per tile whatever the image size. Measured on the
# 2-core CPU, tiles of 24-48 outputs ran 512 x 512 images fastest; whole 1000 px levels were
# slower per window (activations fall out of cache).
TILE_POSITIONS = 48

# Largest resized image (pixels, before the r x r pool) built in one piece, about 200 MB of
# float32: a 2000 x 2000 image at 32 px windows. Larger levels are resampled tile by tile with
# RoIAlign, which is exact too but measured about 10x slower than F.interpolate.
MAX_LEVEL_PIXELS = 2**24


class WindowScorer(Protocol):
    """What a miner needs from a window classifier; both networks implement it."""

    def score_windows(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Scores, (N,), of given windows; image (3, H, W), boxes (N, 4) xyxy pixels."""
        ...

    def score_grid(
        self, image: torch.Tensor, window_shapes: Sequence[tuple[float, float]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (N, 4) and scores (N,) of every grid window of the given (w, h) shapes."""
        ...


def grid_size(height_px: int, width_px: int, window_w: float, window_h: float) -> tuple[int, int]:
    """Rows and columns of grid windows of one shape that fit inside the image.

    Args:
        height_px: image height.
        width_px: image width.
        window_w: window width, pixels.
        window_h: window height, pixels.

    Returns:
        (rows, cols), both 0 when the window is larger than the image.
    """
    if window_w > width_px or window_h > height_px:
        return 0, 0

    # The small epsilon keeps a window ending exactly on the border despite float division.
    steps = GRID_STEPS_PER_WINDOW
    rows = math.floor(steps * (height_px - window_h) / window_h + 1e-9) + 1
    cols = math.floor(steps * (width_px - window_w) / window_w + 1e-9) + 1
    return rows, cols


def grid_windows(
    height_px: int, width_px: int, window_shapes: Sequence[tuple[float, float]]
) -> torch.Tensor:
    """All grid windows of the given shapes, shape by shape, row-major.

    Args:
        height_px: image height.
        width_px: image width.
        window_shapes: (w, h) pairs, pixels.

    Returns:
        (N, 4) xyxy float32, pixels, each window fully inside the image.
    """
    boxes = [_shape_windows(height_px, width_px, w, h) for w, h in _check_shapes(window_shapes)]
    return torch.cat(boxes) if boxes else torch.zeros(0, 4)


def dense_scores(
    model: "WindowNet",
    image: torch.Tensor,
    window_shapes: Sequence[tuple[float, float]],
    max_level_pixels: int = MAX_LEVEL_PIXELS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores every grid window by running the network densely over one level per shape.

    Scores equal `crop_scores` on the returned boxes to within `DENSE_TOLERANCE` (1e-4). Runs on
    the model's device, with the eval-mode network (`WindowNet.folded`); `model` is not changed.

    Args:
        model: a `WindowNet`.
        image: (3, H, W) float from `normalize`, or uint8 (normalized here).
        window_shapes: (w, h) pairs, pixels; shapes larger than the image yield no windows.
        max_level_pixels: largest resized image built in one piece; see `MAX_LEVEL_PIXELS`.

    Returns:
        boxes: (N, 4) xyxy float32, pixels, on the CPU, as `grid_windows` orders them.
        scores: (N,) float32 probabilities, on the CPU.
    """
    device = _device_of(model)
    image = check_image(image).to(device)
    height, width = image.shape[1:]
    net, scores = model.folded(), []
    with torch.no_grad():
        for w, h in _check_shapes(window_shapes):
            rows, cols = grid_size(height, width, w, h)
            if rows and cols:
                logits = _level_logits(net, image, w, h, rows, cols, max_level_pixels)
                scores.append(logits.flatten().sigmoid().float().cpu())

    boxes = grid_windows(height, width, window_shapes)
    return boxes, torch.cat(scores) if scores else torch.zeros(0)


def crop_scores(
    model: "WindowNet", image: torch.Tensor, boxes: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """The per-window reference: crop each window, classify the crops in batches.

    Uses the eval-mode network (`WindowNet.folded`), as `dense_scores` does; `model` is not
    changed.

    Args:
        model: a `WindowNet`.
        image: (3, H, W) float from `normalize`, or uint8 (normalized here).
        boxes: (N, 4) xyxy, pixels; may reach outside the image.
        batch_size: crops per forward pass; 1 scores one window at a time.

    Returns:
        (N,) float32 probabilities, on the CPU.
    """
    device = _device_of(model)
    image = check_image(image).to(device)
    boxes = check_boxes(boxes)
    _check_batch_size(batch_size)

    net, scores = model.folded(), torch.zeros(len(boxes))
    with torch.no_grad():
        for start in range(0, len(boxes), batch_size):
            crops = crop_windows(image, boxes[start : start + batch_size])
            scores[start : start + len(crops)] = net(crops).sigmoid().float().cpu()
    return scores


def roi_scores(
    model: "RoIWindowNet", image: torch.Tensor, boxes: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Scores windows with one trunk pass and RoIAlign over it.

    Args:
        model: a `RoIWindowNet`.
        image: (3, H, W) float from `normalize`, or uint8 (normalized here).
        boxes: (N, 4) xyxy, pixels.
        batch_size: RoIs per head pass (bounds memory, not results).

    Returns:
        (N,) float32 probabilities, on the CPU.
    """
    device = _device_of(model)
    image = check_image(image).to(device)
    boxes = check_boxes(boxes)
    _check_batch_size(batch_size)

    scores = torch.zeros(len(boxes))
    with _inference(model):
        features = model.features(image[None])[0]
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start : start + batch_size]
            scores[start : start + len(chunk)] = model.roi_logits(features, chunk).sigmoid().cpu()
    return scores


def roi_grid_scores(
    model: "RoIWindowNet",
    image: torch.Tensor,
    window_shapes: Sequence[tuple[float, float]],
    batch_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores every grid window (same grid as `dense_scores`) with one trunk pass.

    Returns:
        boxes: (N, 4) xyxy float32, pixels, on the CPU.
        scores: (N,) float32 probabilities, on the CPU.
    """
    image = check_image(image)
    boxes = grid_windows(image.shape[1], image.shape[2], window_shapes)
    return boxes, roi_scores(model, image, boxes, batch_size)


def _level_logits(
    model: "WindowNet",
    image: torch.Tensor,
    w: float,
    h: float,
    rows: int,
    cols: int,
    max_level_pixels: int,
) -> torch.Tensor:
    """Dense logits, (rows, cols), of one window shape, computed tile by tile."""
    level = _level_image(image, w, h, rows, cols, max_level_pixels)

    tile_rows, tile_cols = _tile_len(rows), _tile_len(cols)
    logits = image.new_empty(rows, cols)
    for i in _tile_starts(rows, tile_rows):
        for j in _tile_starts(cols, tile_cols):
            ys = slice(STRIDE_PX * i, STRIDE_PX * i + _level_px(tile_rows))
            xs = slice(STRIDE_PX * j, STRIDE_PX * j + _level_px(tile_cols))
            tile = level[:, ys, xs] if level is not None else _resample_tile(image, w, h, ys, xs)
            logits[i : i + tile_rows, j : j + tile_cols] = model.dense(tile[None])[0]
    return logits


def _level_image(
    image: torch.Tensor, w: float, h: float, rows: int, cols: int, max_level_pixels: int
) -> torch.Tensor | None:
    """The whole level image, or None where it would be too large or came out short."""
    ratio = sampling_ratio(w, h)
    resized_px = image.shape[1] * image.shape[2] * (ratio * CROP_SIZE_PX) ** 2 / (w * h)
    if resized_px > max_level_pixels:
        return None

    # The resize floors its output size; if float rounding cost the last row, resample exactly.
    level = _resize(image, w, h, ratio)
    if level.shape[1] < _level_px(rows) or level.shape[2] < _level_px(cols):
        return None
    return level


def _resize(image: torch.Tensor, w: float, h: float, ratio: int) -> torch.Tensor:
    """The level image of one window shape: (3, ~H * 64 / h, ~W * 64 / w)."""
    scale = (ratio * CROP_SIZE_PX / h, ratio * CROP_SIZE_PX / w)
    level = F.interpolate(
        image[None],
        scale_factor=scale,
        mode="bilinear",
        align_corners=False,
        antialias=False,
        recompute_scale_factor=False,
    )
    return (F.avg_pool2d(level, ratio) if ratio > 1 else level)[0]


def _resample_tile(image: torch.Tensor, w: float, h: float, ys: slice, xs: slice) -> torch.Tensor:
    """One tile of the level image, sampled with RoIAlign at the points `_resize` would use."""
    x_scale, y_scale = w / CROP_SIZE_PX, h / CROP_SIZE_PX
    box = [xs.start * x_scale, ys.start * y_scale, xs.stop * x_scale, ys.stop * y_scale]
    size = (ys.stop - ys.start, xs.stop - xs.start)
    rois = torch.tensor([box], dtype=image.dtype, device=image.device)
    return roi_align(image[None], [rois], size, 1.0, sampling_ratio(w, h), aligned=True)[0]


def _shape_windows(height_px: int, width_px: int, w: float, h: float) -> torch.Tensor:
    rows, cols = grid_size(height_px, width_px, w, h)
    y1 = torch.arange(rows, dtype=torch.float64) * (h / GRID_STEPS_PER_WINDOW)
    x1 = torch.arange(cols, dtype=torch.float64) * (w / GRID_STEPS_PER_WINDOW)
    y1, x1 = torch.meshgrid(y1, x1, indexing="ij")
    corners = [x1.flatten(), y1.flatten(), x1.flatten() + w, y1.flatten() + h]
    return torch.stack(corners, dim=1).float()


def _level_px(positions: int) -> int:
    """Level pixels a run of `positions` dense outputs needs along one axis."""
    return STRIDE_PX * (positions - 1) + CROP_SIZE_PX


def _tile_len(positions: int) -> int:
    """Tile length, in outputs, splitting `positions` into nearly equal tiles."""
    return math.ceil(positions / math.ceil(positions / TILE_POSITIONS))


def _tile_starts(positions: int, tile: int) -> list[int]:
    """Tile starts covering 0..positions; the last tile is pulled back to fit, overlapping."""
    starts = list(range(0, positions - tile + 1, tile))
    if starts[-1] + tile < positions:
        starts.append(positions - tile)
    return starts


def _check_shapes(window_shapes: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    shapes = []
    for shape in window_shapes:
        if len(shape) != 2 or not all(isinstance(v, int | float) and v > 0 for v in shape):
            raise ModelError(
                f"expected window shapes as (width_px, height_px) pairs of positive numbers, "
                f"got {shape!r} in {list(window_shapes)!r}"
            )
        shapes.append((float(shape[0]), float(shape[1])))
    return shapes


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ModelError(f"expected batch_size to be a positive integer, got {batch_size!r}")


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm as an affine map) without autograd; the mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
