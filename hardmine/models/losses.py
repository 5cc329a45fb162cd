"""Losses for window classification: cross-entropy, focal loss, and OHEM's selection."""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from hardmine.models.errors import ModelError

LOSS_NAMES = ("ce", "focal", "ohem")
REDUCTIONS = ("none", "mean", "sum")


@dataclass(frozen=True)
class LossConfig:
    """Which loss trains the window classifier, and its knobs."""

    # ce: binary cross-entropy over the batch; focal: Lin et al. 2017, normalized by the batch's
    # positives; ohem: cross-entropy over only the hardest windows (Shrivastava et al. 2016).
    name: Literal["ce", "focal", "ohem"] = "ce"
    # focal: weight of positives (negatives get 1 - alpha), 0-1; None weighs both classes alike.
    focal_alpha: float | None = 0.25
    # focal: focusing exponent, >= 0; 0 with alpha None is plain cross-entropy.
    focal_gamma: float = 2.0
    # focal: probability the final bias encodes before training (Lin et al.'s pi), 0-1 exclusive;
    # None leaves the bias as it is (continuing from a checkpoint).
    focal_prior: float | None = 0.01
    # ohem: windows per batch that get gradient (the paper's B); None means batch_size // 4.
    # The paper keeps 128 of about 4,000 RoIs (3%); our batches are drawn, not exhaustive, and
    # small, so a quarter keeps the gradient averaged over enough windows while still dropping
    # the easy three quarters.
    ohem_keep: int | None = None
    # ohem: IoU above which a lower-loss window of the same image is a duplicate and dropped.
    ohem_nms_iou: float = 0.7

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise ModelError(f"unknown loss {self.name!r}; choose one of {list(LOSS_NAMES)}")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            raise ModelError(f"focal_alpha must be in [0, 1] or None, got {self.focal_alpha}")
        if self.focal_gamma < 0:
            raise ModelError(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.focal_prior is not None and not 0 < self.focal_prior < 1:
            raise ModelError(f"focal_prior must be in (0, 1) or None, got {self.focal_prior}")

        keep = self.ohem_keep
        if keep is not None and (not isinstance(keep, int) or keep < 1):
            raise ModelError(f"ohem_keep must be a positive integer or None, got {keep!r}")
        if not 0 < self.ohem_nms_iou <= 1:
            raise ModelError(f"ohem_nms_iou must be in (0, 1], got {self.ohem_nms_iou}")


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t) ** gamma.

    Args:
        logits: (N,) or any shape, raw scores.
        targets: same shape as logits, 1 for object and 0 for background (floats allowed).
        alpha: weight of positives, negatives get 1 - alpha; None or negative: no weighting.
        gamma: focusing exponent; 0 leaves cross-entropy's shape.
        reduction: "none" (per element), "mean" or "sum".

    Returns:
        Per-element losses, or their mean or sum.
    """
    if reduction not in REDUCTIONS:
        raise ModelError(f"unknown reduction {reduction!r}; choose one of {list(REDUCTIONS)}")
    if logits.shape != targets.shape:
        raise ModelError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    targets = targets.to(logits.dtype)

    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma

    if alpha is not None and alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def ohem_select(
    losses: torch.Tensor,
    boxes: torch.Tensor,
    image_ids: torch.Tensor,
    keep: int,
    nms_iou: float = 0.7,
) -> torch.Tensor:
    """OHEM's hard example selection (Shrivastava et al. 2016).

    Ranks windows by loss, drops near-duplicates within each image (NMS with the loss as the
    score), and keeps the `keep` hardest.

    Args:
        losses: (N,) per-window losses.
        boxes: (N, 4) xyxy, pixels, in their images' coordinates.
        image_ids: (N,) integer image of each window; windows of different images never suppress
            each other.
        keep: how many windows to keep at most.
        nms_iou: IoU above which the lower-loss window is dropped.

    Returns:
        (min(keep, survivors),) int64 indices into the inputs, hardest first.
    """
    n = len(losses)
    if losses.ndim != 1 or boxes.shape != (n, 4) or image_ids.shape != (n,):
        raise ModelError(
            f"expected losses (N,), boxes (N, 4), image_ids (N,), got {tuple(losses.shape)}, "
            f"{tuple(boxes.shape)}, {tuple(image_ids.shape)}"
        )
    if keep < 1:
        raise ModelError(f"keep must be a positive integer, got {keep}")

    survivors = batched_nms(boxes.float(), losses.detach().float(), image_ids, nms_iou)
    return survivors[:keep]


def window_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor,
    image_ids: torch.Tensor,
    config: LossConfig,
    ohem_keep: int,
) -> torch.Tensor:
    """The training loss of one batch, as `config` names it.

    Args:
        logits: (N,) raw scores.
        labels: (N,) 1 object, 0 background.
        boxes: (N, 4) xyxy, pixels (used by OHEM's NMS only).
        image_ids: (N,) image of each window (used by OHEM's NMS only).
        config: which loss.
        ohem_keep: windows that get gradient under OHEM.

    Returns:
        Scalar loss.
    """
    targets = labels.to(logits.dtype)
    if config.name == "focal":
        # Lin et al. normalize by the number of positives, not of all windows.
        total = sigmoid_focal_loss(logits, targets, config.focal_alpha, config.focal_gamma, "sum")
        return total / targets.sum().clamp(min=1)

    per_window = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if config.name == "ohem":
        # One forward pass: a second pass over the kept windows would change BatchNorm's batch
        # statistics between selection and update. Dropped windows simply get no gradient.
        kept = ohem_select(per_window, boxes, image_ids, ohem_keep, config.ohem_nms_iou)
        return per_window[kept].mean()
    return per_window.mean()
