"""One mining shard: decode images, score every window, pick hard negatives, drop repeats.

A shard is a list of images; memory is bounded by the shard, not by the dataset. The caller
loads what the pool already holds for these images and admits the result in one transaction,
so the pool is never touched from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torchvision.ops import box_iou

from hardmine.miners.base import MiningConfig, Strategy
from hardmine.miners.windows import WindowShape, background_mask
from hardmine.models.scoring import WindowScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningImage:
    """An image to mine, with what is known about it.

    Args:
        objects: (M, 4) xyxy pixels, every object (ignored ones too): never background.
        pooled: negatives the pool holds for this image, as (example id, box xyxy).
    """

    image_id: int
    path: str
    objects: torch.Tensor
    pooled: Sequence[tuple[int, tuple[float, float, float, float]]] = ()


@dataclass(frozen=True)
class Candidate:
    image_id: int
    box: tuple[float, float, float, float]  # xyxy pixels
    score: float  # the detector's score
    loss: float  # cross-entropy of the window as background: -log(1 - score)


@dataclass
class ShardResult:
    candidates: list[Candidate] = field(default_factory=list)  # to admit, within the quota
    remined: list[int] = field(default_factory=list)  # pool example ids found again
    images: int = 0  # images scored
    skipped_images: int = 0  # images that did not decode
    windows_scored: int = 0
    selected: int = 0  # chosen by the strategy, before dedupe and quota
    elapsed_s: float = 0.0  # decoding and scoring, wall clock


def decode_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    with PILImage.open(path) as image:
        return np.array(image.convert("RGB"))


def _try_decode(path: str) -> np.ndarray | str:
    try:
        return decode_rgb(path)
    except (OSError, SyntaxError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def mine_shard(
    scorer: WindowScorer,
    images: Sequence[MiningImage],
    shapes: Sequence[WindowShape],
    strategy: Strategy,
    quota: int,
    seed: int,
) -> ShardResult:
    """Mine `images` with `scorer`; at most `quota` candidates come back.

    Args:
        scorer: a window classifier (`WindowNet` or `RoIWindowNet`), in eval mode.
        shapes: window shapes (w, h), pixels.
        strategy: picks the hard windows of an image; owns NMS and the per-image cap.
        quota: this shard's share of the per-round cap.
        seed: seeds the random choices (random strategy, trimming), per shard.
    """
    config: MiningConfig = strategy.config
    generator = torch.Generator().manual_seed(seed)
    result = ShardResult()
    start = time.perf_counter()

    chosen: list[Candidate] = []
    with ThreadPoolExecutor(config.decode_workers) as pool:
        for image, decoded in zip(
            images, pool.map(_try_decode, [i.path for i in images]), strict=True
        ):
            if isinstance(decoded, str):
                log.warning("skipped unreadable image %s: %s", image.path, decoded)
                result.skipped_images += 1
                continue
            found, remined = _mine_image(
                scorer, image, decoded, shapes, strategy, generator, result
            )
            chosen.extend(found)
            result.remined.extend(remined)

    keep = strategy.trim(torch.tensor([c.score for c in chosen]), quota, generator)
    result.candidates = [chosen[i] for i in sorted(keep.tolist())]
    result.elapsed_s = time.perf_counter() - start
    if result.skipped_images:
        log.warning("skipped %d unreadable images in this shard", result.skipped_images)
    return result


def _mine_image(
    scorer: WindowScorer,
    image: MiningImage,
    pixels: np.ndarray,
    shapes: Sequence[WindowShape],
    strategy: Strategy,
    generator: torch.Generator,
    result: ShardResult,
) -> tuple[list[Candidate], list[int]]:
    boxes, scores = scorer.score_grid(torch.from_numpy(pixels), shapes)
    config = strategy.config
    background = background_mask(
        boxes, image.objects, config.background_iou, config.max_object_cover
    )
    picked = strategy.select(boxes, scores, background, generator)
    result.images += 1
    result.windows_scored += len(boxes)
    result.selected += len(picked)

    fresh, remined = dedupe(boxes[picked], image.pooled, config.dedupe_iou)
    candidates = []
    for index in picked[fresh].tolist():
        score = float(scores[index])
        loss = float(-np.log1p(-min(score, 1 - 1e-7)))
        candidates.append(Candidate(image.image_id, tuple(boxes[index].tolist()), score, loss))
    log.debug(
        "image=%d windows=%d picked=%d new=%d",
        image.image_id,
        len(boxes),
        len(picked),
        len(candidates),
    )
    return candidates, remined


def dedupe(
    boxes: torch.Tensor,
    pooled: Sequence[tuple[int, tuple[float, float, float, float]]],
    iou_bar: float,
) -> tuple[torch.Tensor, list[int]]:
    """Which boxes are new, and which pooled examples the others repeat.

    Args:
        boxes: (K, 4) xyxy pixels, the image's picked windows.
        pooled: the image's pooled negatives as (example id, box).

    Returns:
        (K,) bool, True for boxes overlapping no pooled negative above `iou_bar`; and for
        each other box the id of the pooled example it overlaps most.
    """
    if not pooled or len(boxes) == 0:
        return torch.ones(len(boxes), dtype=torch.bool), []
    ids = torch.tensor([example_id for example_id, _ in pooled])
    overlap = box_iou(boxes.double(), torch.tensor([box for _, box in pooled], dtype=torch.double))
    best, which = overlap.max(dim=1)
    repeat = best > iou_bar
    return ~repeat, ids[which[repeat]].tolist()
