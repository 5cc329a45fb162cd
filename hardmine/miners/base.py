"""The mining budget and the interface every strategy implements.

A strategy only decides which background windows of an image are hard. The base class owns the
budget around that decision: non-maximum suppression among the chosen windows, the per-image cap,
and trimming a shard's candidates to its share of the per-round cap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torchvision.ops import nms

from hardmine.errors import HardmineError


@dataclass(frozen=True)
class MiningConfig:
    """How a mining pass turns window scores into hard negatives."""

    # Which strategy picks the hard windows: threshold | topk | random.
    strategy: str = "threshold"
    # threshold: windows scoring at least this (0-1) are false positives (the classic bootstrap).
    score_threshold: float = 0.5
    # topk: the k highest-scoring background windows per image, whatever their score.
    topk: int = 10
    # IoU above which a chosen window suppresses a lower-priority one on the same image.
    nms_iou: float = 0.7
    # Most hard negatives one image may give per round.
    per_image_cap: int = 20
    # Most hard negatives one round may admit, shared among shards by their image counts.
    per_round_cap: int = 2000
    # A window is background when its IoU with every object of its image is under this.
    background_iou: float = 0.3
    # ...and no object covers more than this fraction of its area (1 turns the check off): for
    # large objects, whose parts have a small IoU with them.
    max_object_cover: float = 1.0
    # A candidate overlapping a negative already pooled for its image above this IoU is not
    # added again; that example's re-mined count goes up instead.
    dedupe_iou: float = 0.7
    # Images per mining shard: the unit of parallel work and of atomic admission.
    shard_images: int = 32
    # Threads decoding images ahead of the scorer.
    decode_workers: int = 2

    def __post_init__(self) -> None:
        from hardmine.miners.registry import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise HardmineError(
                f"unknown mining strategy {self.strategy!r}; choose one of {sorted(STRATEGIES)}"
            )
        names = ("score_threshold", "nms_iou", "background_iou", "dedupe_iou", "max_object_cover")
        for name in names:
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise HardmineError(f"{name} must be in (0, 1], got {value}")
        for name in ("topk", "per_image_cap", "per_round_cap", "shard_images", "decode_workers"):
            if getattr(self, name) < 1:
                raise HardmineError(f"{name} must be at least 1, got {getattr(self, name)}")


class Strategy(ABC):
    """Picks the hard negatives of one image; see `MiningConfig` for the budget."""

    name: ClassVar[str]
    kind: ClassVar[str] = "hard"  # the pool kind of what it admits

    def __init__(self, config: MiningConfig) -> None:
        self.config = config

    @abstractmethod
    def ranked(
        self, scores: torch.Tensor, background: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Indices of the windows this strategy would take, highest priority first.

        Args:
            scores: (N,) window scores, 0-1.
            background: (N,) bool, windows that overlap no object.
        """

    def limit(self) -> int:
        """Most windows one image may give."""
        return self.config.per_image_cap

    def select(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        background: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Indices of the image's hard negatives, after NMS and the per-image cap.

        Args:
            boxes: (N, 4) xyxy pixels; scores: (N,); background: (N,) bool.
        """
        order = self.ranked(scores, background, generator)
        if len(order) == 0:
            return order
        # NMS keeps the first of overlapping windows in priority order.
        priority = torch.arange(len(order), 0, -1, dtype=torch.float32)
        kept = nms(boxes[order].float(), priority, self.config.nms_iou)
        return order[kept][: self.limit()]

    def trim(self, scores: torch.Tensor, quota: int, generator: torch.Generator) -> torch.Tensor:
        """Which of a shard's candidates (their scores given) fit its quota: the highest."""
        return torch.argsort(scores, descending=True, stable=True)[:quota]


def shard_quota(per_round_cap: int, shard_images: int, total_images: int) -> int:
    """A shard's share of the per-round cap, in proportion to its images (rounded up)."""
    if total_images <= 0:
        return 0
    return -(-per_round_cap * shard_images // total_images)
