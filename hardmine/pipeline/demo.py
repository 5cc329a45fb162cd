"""The embedded demo dataset: synthetic photos-like images with targets and look-alikes.

The target is a red disk with a white dot at its centre. Look-alikes share most of that (a red
disk with no dot, with the dot off-centre, with a dark dot, an orange disk with the dot) and
appear in
only a minority of images, so a random sample of background windows rarely holds one: a detector
trained on random background learns "red disk" and fires on them, as detectors do on real
look-alikes. Mining finds them; that is what the demo shows.

Everything is drawn from one seed with numpy and Pillow: the same seed gives the same files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

log = logging.getLogger(__name__)

CATEGORY = "target"
LOOKALIKES = ("plain", "off_centre", "orange", "dark_dot")


@dataclass(frozen=True)
class DemoConfig:
    train_images: int = 160  # images in the train split (trained on and mined)
    test_images: int = 80  # held-out images for evaluation
    size_px: int = 256  # images are square
    radius_px: tuple[int, int] = (10, 22)  # disk radius range of targets and look-alikes
    background_only_fraction: float = 0.2  # images with no target at all
    lookalike_fraction: float = 0.3  # images that hold look-alikes (2 to 4 of them)
    clutter_shapes: tuple[int, int] = (6, 14)  # background shapes per image
    occluders: int = 2  # up to this many shapes drawn over the disks
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train_images < 1 or self.test_images < 1:
            raise ValueError("DemoConfig: train_images and test_images must be at least 1")
        if self.size_px < 4 * self.radius_px[1]:
            raise ValueError(
                f"DemoConfig: size_px={self.size_px} is too small for radius up to "
                f"{self.radius_px[1]} px; use at least {4 * self.radius_px[1]}"
            )


@dataclass(frozen=True)
class DemoFiles:
    images_dir: Path
    annotations: dict[str, Path]  # split -> COCO annotation file


def generate_demo(
    workdir: str | Path, seed: int = 0, config: DemoConfig | None = None
) -> DemoFiles:
    """Write the demo dataset under `workdir`: images/ and annotations/demo_<split>.json."""
    config = config or DemoConfig()
    workdir = Path(workdir)
    images_dir = workdir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    (workdir / "annotations").mkdir(exist_ok=True)

    rng = np.random.default_rng(seed)
    annotations = {}
    for split, count in (("train", config.train_images), ("test", config.test_images)):
        coco = _draw_split(rng, split, count, images_dir, config)
        path = workdir / "annotations" / f"demo_{split}.json"
        path.write_text(json.dumps(coco, indent=1))
        annotations[split] = path
    log.info("demo dataset written to %s (seed=%d)", workdir, seed)
    return DemoFiles(images_dir=images_dir, annotations=annotations)


def _draw_split(
    rng: np.random.Generator, split: str, count: int, images_dir: Path, config: DemoConfig
) -> dict:
    coco: dict = {
        "info": {"description": "hardmine demo dataset", "split": split},
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": CATEGORY}],
    }
    for index in range(count):
        file_name = f"{split}_{index:04d}.jpg"
        image, boxes, lookalikes = _draw_image(rng, config)
        image.save(images_dir / file_name, quality=config.jpeg_quality)

        # The look-alikes ride along in an extra field (COCO readers ignore unknown keys), so
        # analyses can tell which false positives fell on them.
        image_id = index + 1
        coco["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": config.size_px,
                "height": config.size_px,
                "lookalikes": [_xywh(box) for box in lookalikes],
            }
        )
        for box in boxes:
            x, y, w, h = _xywh(box)
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    return coco


def _xywh(box: tuple[float, float, float, float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def _draw_image(rng: np.random.Generator, config: DemoConfig) -> tuple[Image.Image, list, list]:
    """One image, its target boxes and its look-alike boxes (xyxy pixels)."""
    image = _background(rng, config.size_px)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(*config.clutter_shapes, endpoint=True)):
        _clutter_shape(rng, draw, config.size_px)

    # Targets and look-alikes never overlap each other, so every box is unambiguous.
    placed: list[tuple[float, float, float]] = []
    targets = 0 if rng.random() < config.background_only_fraction else rng.integers(1, 4)
    lookalikes = rng.integers(2, 5) if rng.random() < config.lookalike_fraction else 0

    boxes, lookalike_boxes = [], []
    for _ in range(targets):
        disk = _free_disk(rng, placed, config)
        if disk is not None:
            boxes.append(_draw_disk(draw, disk, kind="target", rng=rng))
    for _ in range(lookalikes):
        disk = _free_disk(rng, placed, config)
        if disk is not None:
            kind = LOOKALIKES[rng.integers(len(LOOKALIKES))]
            lookalike_boxes.append(_draw_disk(draw, disk, kind=kind, rng=rng))

    # Shapes drawn over the disks occlude some of them.
    for _ in range(rng.integers(0, config.occluders, endpoint=True)):
        _clutter_shape(rng, draw, config.size_px)

    image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.2)))
    contrast = rng.uniform(0.75, 1.15)
    noisy = contrast * np.asarray(image, dtype=np.float32) + rng.normal(
        0, 6, (config.size_px, config.size_px, 3)
    )
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), boxes, lookalike_boxes


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth field of muted colours (a coarse random grid, upsampled)."""
    coarse = rng.uniform(40, 200, (4, 4, 3)).astype(np.uint8)
    # Keep the field away from saturated red so only drawn disks are red.
    coarse[..., 0] = np.minimum(coarse[..., 0], coarse[..., 1] + 40)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _clutter_shape(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int) -> None:
    """A rectangle, line, ellipse or white dot in a colour that is not the targets' red."""
    palette = [
        (40, 90, 200),
        (60, 160, 70),
        (220, 210, 60),
        (90, 60, 130),
        (30, 30, 30),
        (235, 235, 235),
        (150, 110, 80),
    ]
    colour = palette[rng.integers(len(palette))]
    x, y = rng.uniform(0, size, 2)
    w, h = rng.uniform(8, 60, 2)
    shape = rng.integers(4)
    if shape == 0:
        draw.rectangle((x, y, x + w, y + h), fill=colour)
    elif shape == 1:
        draw.line(
            (x, y, x + rng.uniform(-80, 80), y + rng.uniform(-80, 80)),
            fill=colour,
            width=int(rng.integers(2, 6)),
        )
    elif shape == 2:
        draw.ellipse((x, y, x + w, y + h), fill=colour)
    else:
        r = rng.uniform(2, 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(245, 245, 245))


def _free_disk(
    rng: np.random.Generator, placed: list[tuple[float, float, float]], config: DemoConfig
) -> tuple[float, float, float] | None:
    """A disk (cx, cy, r) inside the image that keeps clear of the disks placed so far."""
    for _ in range(50):
        r = rng.uniform(*config.radius_px)
        cx, cy = rng.uniform(r + 2, config.size_px - r - 2, 2)
        if all(np.hypot(cx - px, cy - py) > r + pr + 6 for px, py, pr in placed):
            placed.append((cx, cy, r))
            return cx, cy, r
    return None


def _draw_disk(
    draw: ImageDraw.ImageDraw, disk: tuple[float, float, float], kind: str, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """Draw a target or a look-alike; returns its box (xyxy pixels).

    Targets vary in shade, dot size and dot brightness, so some are harder than others; each
    look-alike differs from a target in one feature only.
    """
    cx, cy, r = disk
    red = (int(rng.integers(170, 241)), int(rng.integers(20, 71)), int(rng.integers(20, 71)))
    fill = (
        (int(rng.integers(225, 246)), int(rng.integers(105, 146)), 40) if kind == "orange" else red
    )
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)

    dot = r * rng.uniform(0.25, 0.35)
    shade = int(rng.integers(200, 256))
    dot_colour = (shade, shade, shade)
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(0.0, 0.1) * r
    if kind == "off_centre":
        offset = rng.uniform(0.45, 0.6) * r
    elif kind == "dark_dot":
        dot_colour = (40, 40, 40)
    elif kind == "plain":
        return (cx - r, cy - r, cx + r, cy + r)
    dx, dy = offset * np.cos(angle), offset * np.sin(angle)
    draw.ellipse((cx + dx - dot, cy + dy - dot, cx + dx + dot, cy + dy + dot), fill=dot_colour)
    return (cx - r, cy - r, cx + r, cy + r)
