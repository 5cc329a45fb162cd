"""Thumbnails of pool examples: the example's box cut from its image, as a small JPEG."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image as PILImage

MAX_SIDE_PX = 160  # longer side of a crop; larger boxes are scaled down, smaller ones kept
MARGIN = 0.1  # context kept around the box on each side, as a fraction of the box's side
JPEG_QUALITY = 85


class CropError(Exception):
    """The image behind a pool example cannot be read; the message says which file and why."""


def crop_bounds(
    box: tuple[float, float, float, float], width: int, height: int, margin: float = MARGIN
) -> tuple[int, int, int, int]:
    """The pixel region cut for `box`: the box grown by `margin` per side, clipped to the image.

    Args:
        box: xyxy, pixels of the original image.
        width, height: the image's size, pixels.

    Returns:
        (left, top, right, bottom), whole pixels, right and bottom exclusive; at least 1x1.
    """
    x1, y1, x2, y2 = box
    grow_x, grow_y = margin * (x2 - x1), margin * (y2 - y1)
    left = min(max(0, math.floor(x1 - grow_x)), width - 1)
    top = min(max(0, math.floor(y1 - grow_y)), height - 1)
    right = max(min(width, math.ceil(x2 + grow_x)), left + 1)
    bottom = max(min(height, math.ceil(y2 + grow_y)), top + 1)
    return left, top, right, bottom


def crop_size(bounds: tuple[int, int, int, int], max_side_px: int = MAX_SIDE_PX) -> tuple[int, int]:
    """The (width, height) of the JPEG for a region: scaled so the longer side fits `max_side_px`.

    Args:
        bounds: (left, top, right, bottom) as `crop_bounds` returns, pixels.
    """
    width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
    scale = min(1.0, max_side_px / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def crop_jpeg(path: str | Path, box: tuple[float, float, float, float]) -> bytes:
    """The JPEG bytes of `box` cut from the image file at `path`, with a small margin.

    Args:
        path: the image file, as the store records it.
        box: xyxy, pixels of the original image.

    Raises:
        CropError: the file is missing or does not decode.
    """
    try:
        with PILImage.open(path) as image:
            bounds = crop_bounds(box, image.width, image.height)
            region = image.crop(bounds)
            size = crop_size(bounds)
            if region.size != size:
                region = region.resize(size, PILImage.Resampling.LANCZOS)
    except FileNotFoundError as exc:
        raise CropError(f"image file {path} is missing; was the dataset moved?") from exc
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise CropError(f"image file {path} does not decode: {exc}") from exc

    if region.mode not in ("RGB", "L"):
        region = region.convert("RGB")
    buffer = io.BytesIO()
    region.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
