"""Score a one-class ("object") detector on held-out images.

A pure function over in-memory arrays: no database, no Prefect. Boxes are xyxy in pixels, with
x2 and y2 exclusive as in the store, so a box's width is x2 - x1.

Two families of numbers come out:

- AP and AP50 from pycocotools' COCOeval, on the scores alone (no operating threshold). COCO keeps
  at most 100 detections per image, the highest-scoring ones; the rest are ignored by AP only.
- Counts at the operating threshold (true positives, false positives, fp_per_image, recall) and
  threshold-free curves of recall and miss rate against false positives per image (FPPI), from
  one greedy matching per image: detections in descending score order, each taking the unmatched
  object it overlaps most, if that IoU reaches the bar (the PASCAL and COCO rule).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

log = logging.getLogger(__name__)

# COCOeval's stock limits; its AP and AP50 read the last one, so it must stay 100.
_COCO_MAX_DETS = (1, 10, 100)
_COCO_CATEGORY_ID = 1

# Dollar et al. (Caltech pedestrians): 9 FPPI references evenly spaced in log space on [1e-2, 1e0].
_LAMR_FP_PER_IMAGE_REFS = np.logspace(-2.0, 0.0, 9)
# A miss rate of 0 would make the log-average -inf; the Caltech toolbox clips at the same value.
_LAMR_MIN_MISS_RATE = 1e-10


@dataclass(frozen=True)
class EvalImage:
    """One held-out image: its objects and the detector's detections on it.

    Lists are accepted and stored as float64 arrays; an empty list means no boxes.

    Attributes:
        image_id: unique among the images evaluated together.
        width: image width, pixels.
        height: image height, pixels.
        objects: (M, 4) xyxy, pixels; M may be 0 (a background-only image).
        detections: (K, 4) xyxy, pixels; K may be 0.
        scores: (K,) detection scores in [0, 1].
    """

    image_id: int
    width: int
    height: int
    objects: np.ndarray
    detections: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if isinstance(self.image_id, bool) or not isinstance(self.image_id, int | np.integer):
            raise ValueError(
                f"image_id must be an integer; got {self.image_id!r}. Pass the store's image id."
            )
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"image {self.image_id}: width and height must be positive pixels; "
                f"got {self.width} x {self.height}. Pass the size of the image file."
            )

        object.__setattr__(self, "objects", _as_boxes(self.objects, "objects", self.image_id))
        object.__setattr__(
            self, "detections", _as_boxes(self.detections, "detections", self.image_id)
        )
        object.__setattr__(self, "scores", _as_scores(self.scores, self.image_id))

        if len(self.scores) != len(self.detections):
            raise ValueError(
                f"image {self.image_id}: expected one score per detection; got "
                f"{len(self.detections)} detections and {len(self.scores)} scores. "
                "Pass scores of shape (K,) for detections of shape (K, 4)."
            )


@dataclass(frozen=True)
class DetectionMetrics:
    """What evaluate_detections measured. None marks a number that is undefined on this input.

    Attributes:
        images: images evaluated, background-only ones included.
        objects: objects over all images.
        detections: detections over all images, before the operating threshold.
        true_positives: detections at the operating threshold matched to an object.
        false_positives: detections at the operating threshold matched to no object.
        fp_per_image: false_positives / images.
        recall: true_positives / objects; None without objects.
        ap: COCO AP, IoU 0.50:0.95, at most 100 detections per image; None without objects.
        ap50: COCO AP at IoU 0.5, same limits; None without objects.
        fp_per_image_at_recall: recall level (as a string, e.g. "0.5") to the smallest FPPI at
            which recall reaches it, over all score thresholds; None where it is never reached.
        lamr: log-average miss rate over FPPI in [1e-2, 1]; None without objects.
        operating_threshold: score at or above which a detection counts, 0-1.
        iou_threshold: IoU a detection needs with an object to be a true positive.
    """

    images: int
    objects: int
    detections: int
    true_positives: int
    false_positives: int
    fp_per_image: float
    recall: float | None
    ap: float | None
    ap50: float | None
    fp_per_image_at_recall: dict[str, float | None] = field(default_factory=dict)
    lamr: float | None = None
    operating_threshold: float = 0.5
    iou_threshold: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as plain ints, floats, None and a str-keyed dict, ready for JSON."""
        return {
            "images": self.images,
            "objects": self.objects,
            "detections": self.detections,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "fp_per_image": self.fp_per_image,
            "recall": self.recall,
            "ap": self.ap,
            "ap50": self.ap50,
            "fp_per_image_at_recall": dict(self.fp_per_image_at_recall),
            "lamr": self.lamr,
            "operating_threshold": self.operating_threshold,
            "iou_threshold": self.iou_threshold,
        }


def evaluate_detections(
    images: Sequence[EvalImage],
    operating_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    recall_levels: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
) -> DetectionMetrics:
    """Score a one-class detector on held-out images.

    Args:
        images: the held-out images with their objects, detections and scores; at least one,
            with unique image ids. Images without objects count as images: every detection on
            them is a false positive.
        operating_threshold: score in (0, 1); detections scoring at or above it count toward
            true_positives, false_positives, fp_per_image and recall.
        iou_threshold: IoU in (0, 1] a detection needs with an object to match it. Used by the
            counts and curves; COCO's AP and AP50 keep their own IoU thresholds.
        recall_levels: recall levels in (0, 1] at which to report the smallest FPPI.

    Returns:
        The metrics; see DetectionMetrics.

    Raises:
        ValueError: on an empty image list, repeated image ids or thresholds out of range.
    """
    _check_arguments(images, operating_threshold, iou_threshold, recall_levels)
    num_images = len(images)
    num_objects = sum(len(image.objects) for image in images)

    # Greedy matching by score is prefix-stable: the detections above any threshold match the
    # same objects whatever scores lower, so one matching serves every threshold.
    is_true_positive = np.concatenate([_match_image(image, iou_threshold) for image in images])
    scores = np.concatenate([image.scores for image in images])

    kept = scores >= operating_threshold
    true_positives = int(np.count_nonzero(is_true_positive & kept))
    false_positives = int(np.count_nonzero(~is_true_positive & kept))

    recall_curve, fp_per_image_curve = _recall_and_fp_per_image_curves(
        scores, is_true_positive, num_objects, num_images
    )
    ap, ap50 = _coco_ap(images)

    return DetectionMetrics(
        images=num_images,
        objects=num_objects,
        detections=len(scores),
        true_positives=true_positives,
        false_positives=false_positives,
        fp_per_image=false_positives / num_images,
        recall=true_positives / num_objects if num_objects else None,
        ap=ap,
        ap50=ap50,
        fp_per_image_at_recall=_fp_per_image_at_recall(
            recall_curve, fp_per_image_curve, recall_levels
        ),
        lamr=_log_average_miss_rate(recall_curve, fp_per_image_curve) if num_objects else None,
        operating_threshold=float(operating_threshold),
        iou_threshold=float(iou_threshold),
    )


def _check_arguments(
    images: Sequence[EvalImage],
    operating_threshold: float,
    iou_threshold: float,
    recall_levels: Sequence[float],
) -> None:
    """Raise ValueError naming the first argument of evaluate_detections that is out of range."""
    if len(images) == 0:
        raise ValueError(
            "evaluate_detections needs at least one image; got none. "
            "Pass the held-out images, background-only ones included."
        )
    image_ids = [int(image.image_id) for image in images]
    repeated = sorted({i for i in image_ids if image_ids.count(i) > 1})
    if repeated:
        raise ValueError(
            f"image ids must be unique; got {repeated} more than once. "
            "Pass each image once, with all its objects and detections."
        )

    if not 0.0 < operating_threshold < 1.0:
        raise ValueError(
            f"operating_threshold must be a score in (0, 1); got {operating_threshold}. "
            "Pass the score at or above which a detection counts, e.g. 0.5."
        )
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(
            f"iou_threshold must be in (0, 1]; got {iou_threshold}. "
            "Pass the IoU a detection needs with an object to match it, e.g. 0.5."
        )
    outside = [level for level in recall_levels if not 0.0 < level <= 1.0]
    if outside:
        raise ValueError(
            f"recall_levels must lie in (0, 1]; got {outside}. Pass fractions such as 0.5."
        )


def _as_boxes(value: Any, name: str, image_id: int) -> np.ndarray:
    """Return value as a (N, 4) float64 array of xyxy boxes, raising ValueError if it is not one."""
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"image {image_id}: {name} must have shape (N, 4), xyxy pixels; got shape "
            f"{boxes.shape}. Stack one [x1, y1, x2, y2] row per box."
        )

    if not np.isfinite(boxes).all():
        raise ValueError(
            f"image {image_id}: {name} hold NaN or infinite coordinates. "
            "Drop or repair those boxes before evaluating."
        )
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.size:
        raise ValueError(
            f"image {image_id}: {name} box {boxes[inverted[0]].tolist()} has x2 < x1 or y2 < y1; "
            "boxes are [x1, y1, x2, y2], not [x, y, w, h]."
        )
    return boxes


def _as_scores(value: Any, image_id: int) -> np.ndarray:
    """Return value as a (K,) float64 array of scores in [0, 1], raising ValueError otherwise."""
    scores = np.asarray(value, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(
            f"image {image_id}: scores must have shape (K,); got shape {scores.shape}. "
            "Pass one score per detection, flattened."
        )

    outside = scores[~((scores >= 0.0) & (scores <= 1.0))]
    if outside.size:
        raise ValueError(
            f"image {image_id}: scores must be probabilities in [0, 1]; got {outside[0]}. "
            "Apply a sigmoid or softmax to the detector's logits first."
        )
    return scores


def _box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU.

    Args:
        boxes_a: (N, 4) xyxy, pixels.
        boxes_b: (M, 4) xyxy, pixels.

    Returns:
        (N, M) IoU; 0 where both boxes have zero area.
    """
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0.0, None).prod(axis=2)

    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _match_image(image: EvalImage, iou_threshold: float) -> np.ndarray:
    """Greedily match one image's detections to its objects, highest score first.

    Args:
        image: the image; ties in score keep the detections' given order.
        iou_threshold: IoU a detection needs with an unmatched object to match it.

    Returns:
        (K,) bool, True where the detection is a true positive.
    """
    is_true_positive = np.zeros(len(image.detections), dtype=bool)
    if len(image.objects) == 0 or len(image.detections) == 0:
        return is_true_positive

    ious = _box_iou(image.detections, image.objects)
    matched = np.zeros(len(image.objects), dtype=bool)
    for index in np.argsort(-image.scores, kind="stable"):
        candidate_ious = np.where(matched, -1.0, ious[index])
        best = int(np.argmax(candidate_ious))
        if candidate_ious[best] >= iou_threshold:
            matched[best] = True
            is_true_positive[index] = True
    return is_true_positive


def _recall_and_fp_per_image_curves(
    scores: np.ndarray, is_true_positive: np.ndarray, num_objects: int, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and FPPI at every distinct score threshold, highest threshold first.

    Args:
        scores: (D,) scores of all detections over all images.
        is_true_positive: (D,) bool, the matching of each detection.
        num_objects: objects over all images; recall is all zeros when 0.
        num_images: images evaluated.

    Returns:
        recall and FPPI, each (T,) and nondecreasing, T the number of distinct scores.
    """
    if scores.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    true_positives = np.cumsum(is_true_positive[order])
    false_positives = np.cumsum(~is_true_positive[order])

    # No threshold separates detections with equal scores: keep only the last of each run.
    last_of_score = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    recall = true_positives[last_of_score] / max(num_objects, 1)
    return recall, false_positives[last_of_score] / num_images


def _fp_per_image_at_recall(
    recall: np.ndarray, fp_per_image: np.ndarray, recall_levels: Sequence[float]
) -> dict[str, float | None]:
    """Smallest FPPI at which recall reaches each level; None where it never does.

    Args:
        recall: (T,) nondecreasing recall curve.
        fp_per_image: (T,) nondecreasing FPPI at the same thresholds.
        recall_levels: levels in (0, 1].

    Returns:
        level as a string (e.g. "0.5") to FPPI or None.
    """
    result: dict[str, float | None] = {}
    for level in recall_levels:
        reached = np.flatnonzero(recall >= level)
        result[str(float(level))] = float(fp_per_image[reached[0]]) if reached.size else None
    return result


def _log_average_miss_rate(recall: np.ndarray, fp_per_image: np.ndarray) -> float:
    """Log-average miss rate over FPPI in [1e-2, 1] (Dollar et al., Caltech pedestrians).

    At each of 9 FPPI references the miss rate (1 - recall) is read at the largest FPPI at or
    below the reference. As in the Caltech toolbox (bbGt compRoc), the curve starts from a point
    at FPPI -inf with recall 0, so a reference below every reachable FPPI reads miss rate 1: the
    detector has detected nothing there yet.

    Args:
        recall: (T,) nondecreasing recall curve.
        fp_per_image: (T,) nondecreasing FPPI at the same thresholds.

    Returns:
        The geometric mean of the 9 miss rates, each clipped below at 1e-10; 0-1, lower is better.
    """
    recall = np.concatenate([[0.0], recall])
    fp_per_image = np.concatenate([[-np.inf], fp_per_image])

    at_or_below = np.searchsorted(fp_per_image, _LAMR_FP_PER_IMAGE_REFS, side="right") - 1
    miss_rates = np.maximum(1.0 - recall[at_or_below], _LAMR_MIN_MISS_RATE)
    return float(np.exp(np.mean(np.log(miss_rates))))


def _coco_ap(images: Sequence[EvalImage]) -> tuple[float | None, float | None]:
    """COCO AP (IoU 0.50:0.95) and AP50 through pycocotools, its printing silenced.

    Args:
        images: the images, with unique ids.

    Returns:
        (ap, ap50); both None when there are no objects, where AP is undefined.
    """
    if not any(len(image.objects) for image in images):
        return None, None
    # loadRes rejects an empty result list; with objects but no detections every precision is 0.
    if not any(len(image.detections) for image in images):
        return 0.0, 0.0

    over_limit = [image.image_id for image in images if len(image.detections) > _COCO_MAX_DETS[-1]]
    if over_limit:
        log.warning(
            "ap ignores the detections beyond the %d highest-scoring on %d images (first: %s); "
            "fp_per_image and recall count them all",
            _COCO_MAX_DETS[-1],
            len(over_limit),
            over_limit[0],
        )

    ground_truth = COCO()
    ground_truth.dataset = _coco_ground_truth(images)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        results = ground_truth.loadRes(_coco_results(images))
        coco_eval = COCOeval(ground_truth, results, iouType="bbox")
        coco_eval.params.imgIds = [int(image.image_id) for image in images]
        coco_eval.params.catIds = [_COCO_CATEGORY_ID]
        coco_eval.params.maxDets = list(_COCO_MAX_DETS)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()

    # summarize() writes -1 where no object was eligible; that is "undefined", not a score.
    ap, ap50 = (float(value) for value in coco_eval.stats[:2])
    return (ap if ap >= 0 else None), (ap50 if ap50 >= 0 else None)


def _coco_ground_truth(images: Sequence[EvalImage]) -> dict[str, Any]:
    """COCO ground-truth dataset dict: boxes as [x, y, w, h], one category, no crowd regions."""
    annotations = []
    for image in images:
        for x1, y1, x2, y2 in image.objects.tolist():
            annotations.append(
                {
                    # COCOeval marks an unmatched detection with annotation id 0: ids start at 1.
                    "id": len(annotations) + 1,
                    "image_id": int(image.image_id),
                    "category_id": _COCO_CATEGORY_ID,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )

    return {
        "images": [
            {"id": int(image.image_id), "width": int(image.width), "height": int(image.height)}
            for image in images
        ],
        "annotations": annotations,
        "categories": [{"id": _COCO_CATEGORY_ID, "name": "object"}],
    }


def _coco_results(images: Sequence[EvalImage]) -> list[dict[str, Any]]:
    """COCO detection results: one dict per detection, box as [x, y, w, h] pixels, with score."""
    return [
        {
            "image_id": int(image.image_id),
            "category_id": _COCO_CATEGORY_ID,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score,
        }
        for image in images
        for (x1, y1, x2, y2), score in zip(
            image.detections.tolist(), image.scores.tolist(), strict=True
        )
    ]
