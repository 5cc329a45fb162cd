"""Detections: the windows a detector keeps after a score floor and non-maximum suppression."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import nms

from hardmine.miners.windows import WindowShape
from hardmine.models.scoring import WindowScorer


@dataclass(frozen=True)
class DetectConfig:
    # Windows scoring under this never become detections; a low floor keeps the full
    # precision-recall curve for AP and the threshold-free figures.
    min_score: float = 0.05
    # IoU above which a detection suppresses a lower-scoring one (0.5 is usual for
    # sliding windows).
    nms_iou: float = 0.5
    # Most detections per image, highest scores first (COCO AP reads at most 100).
    max_detections: int = 100


def detect(
    scorer: WindowScorer, pixels: np.ndarray, shapes: Sequence[WindowShape], config: DetectConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Detections of one image.

    Args:
        pixels: (H, W, 3) uint8 RGB.

    Returns:
        boxes (K, 4) xyxy pixels and scores (K,), highest score first.
    """
    boxes, scores = scorer.score_grid(torch.from_numpy(pixels), shapes)
    keep = scores >= config.min_score
    boxes, scores = boxes[keep], scores[keep]
    kept = nms(boxes.float(), scores.float(), config.nms_iou)[: config.max_detections]
    return boxes[kept], scores[kept]
