import json
import logging
import math

import numpy as np
import pytest

from hardmine.pipeline.evaluate import EvalImage, evaluate_detections

# Three disjoint 10 x 10 boxes, xyxy pixels.
BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [50.0, 50.0, 60.0, 60.0]
BOX_C = [100.0, 100.0, 110.0, 110.0]


def _image(
    image_id: int,
    objects: list[list[float]] | None = None,
    detections: list[list[float]] | None = None,
    scores: list[float] | None = None,
) -> EvalImage:
    """A 200 x 200 image; omitted boxes mean none."""
    return EvalImage(
        image_id=image_id,
        width=200,
        height=200,
        objects=np.array(objects or [], dtype=np.float64).reshape(-1, 4),
        detections=np.array(detections or [], dtype=np.float64).reshape(-1, 4),
        scores=np.array(scores or [], dtype=np.float64),
    )


def _background(image_id: int, count: int) -> list[EvalImage]:
    """count images with neither objects nor detections, ids from image_id on."""
    return [_image(image_id + i) for i in range(count)]


# --- the perfect detector ---------------------------------------------------------------------


def test_evaluate_perfect_detector_scores_ap_one_and_no_false_positives() -> None:
    images = [
        _image(1, objects=[BOX_A, BOX_B], detections=[BOX_A, BOX_B], scores=[0.9, 0.8]),
        _image(2, objects=[BOX_C], detections=[BOX_C], scores=[0.7]),
        _image(3),  # background only, no detections
    ]
    metrics = evaluate_detections(images)

    assert metrics.ap == pytest.approx(1.0)  # every detection exact, none wrong
    assert metrics.ap50 == pytest.approx(1.0)
    assert (metrics.true_positives, metrics.false_positives) == (3, 0)
    assert metrics.fp_per_image == 0.0
    assert metrics.recall == 1.0  # 3 of 3 objects
    # Every recall level is reached before the first false positive.
    assert metrics.fp_per_image_at_recall == {
        "0.3": 0.0,
        "0.4": 0.0,
        "0.5": 0.0,
        "0.6": 0.0,
        "0.7": 0.0,
        "0.8": 0.0,
    }
    # Miss rate 0 at all 9 references, clipped to 1e-10.
    assert metrics.lamr == pytest.approx(1e-10)


# --- operating-threshold counts ---------------------------------------------------------------


def test_fp_per_image_counts_detections_on_background_only_images() -> None:
    images = [
        _image(1, objects=[BOX_A], detections=[BOX_A], scores=[0.9]),
        _image(2, detections=[BOX_B], scores=[0.8]),  # background only: a false positive
        *_background(3, 2),
    ]
    metrics = evaluate_detections(images)

    assert (metrics.true_positives, metrics.false_positives) == (1, 1)
    assert metrics.fp_per_image == 0.25  # 1 false positive over 4 images, 3 of them background
    assert metrics.recall == 1.0


def test_evaluate_all_scores_below_operating_threshold_gives_zero_recall_and_no_fp() -> None:
    images = [
        _image(1, objects=[BOX_A], detections=[BOX_A], scores=[0.3]),
        _image(2, detections=[BOX_B], scores=[0.2]),
    ]
    metrics = evaluate_detections(images, operating_threshold=0.5)

    assert (metrics.true_positives, metrics.false_positives) == (0, 0)  # nothing reaches 0.5
    assert metrics.recall == 0.0
    assert metrics.fp_per_image == 0.0
    assert metrics.detections == 2  # counted before the threshold
    # The threshold-free numbers still see them: the true positive outscores the false one.
    assert metrics.ap50 == pytest.approx(1.0)
    assert metrics.fp_per_image_at_recall["0.8"] == 0.0


def test_evaluate_detection_at_exactly_the_operating_threshold_counts() -> None:
    images = [_image(1, objects=[BOX_A], detections=[BOX_A, BOX_B], scores=[0.5, 0.49])]
    metrics = evaluate_detections(images, operating_threshold=0.5)

    assert (metrics.true_positives, metrics.false_positives) == (1, 0)  # 0.5 >= 0.5; 0.49 is not


def test_evaluate_image_without_objects_or_detections_counts_only_as_an_image() -> None:
    images = [_image(1, objects=[BOX_A], detections=[BOX_A], scores=[0.9]), _image(2)]
    metrics = evaluate_detections(images)

    assert (metrics.images, metrics.objects, metrics.detections) == (2, 1, 1)
    assert metrics.fp_per_image == 0.0
    assert metrics.recall == 1.0
    assert metrics.ap == pytest.approx(1.0)


def test_evaluate_duplicate_detection_on_one_object_counts_second_as_false_positive() -> None:
    shifted = [1.0, 0.0, 11.0, 10.0]  # IoU 90/110 = 0.82 with BOX_A
    images = [_image(1, objects=[BOX_A], detections=[BOX_A, shifted], scores=[0.8, 0.9])]
    metrics = evaluate_detections(images)

    # The higher score matches first even though the lower one overlaps better.
    assert (metrics.true_positives, metrics.false_positives) == (1, 1)
    assert metrics.fp_per_image == 1.0  # 1 false positive, 1 image
    # Above 0.85 only the shifted detection is left, and it is the true positive.
    high = evaluate_detections(images, operating_threshold=0.85)
    assert (high.true_positives, high.false_positives) == (1, 0)


def test_evaluate_detection_below_iou_threshold_is_a_false_positive() -> None:
    partial = [0.0, 0.0, 10.0, 6.2]  # IoU 62/100 = 0.62 with BOX_A
    images = [_image(1, objects=[BOX_A], detections=[partial], scores=[0.9])]

    assert evaluate_detections(images, iou_threshold=0.6).true_positives == 1
    strict = evaluate_detections(images, iou_threshold=0.7)
    assert (strict.true_positives, strict.false_positives) == (0, 1)


# --- no objects anywhere ----------------------------------------------------------------------


def test_evaluate_without_objects_leaves_ap_recall_and_lamr_undefined() -> None:
    images = [_image(1, detections=[BOX_A], scores=[0.9]), _image(2)]
    metrics = evaluate_detections(images)

    assert metrics.ap is None and metrics.ap50 is None  # pycocotools' -1, mapped
    assert metrics.recall is None
    assert metrics.lamr is None
    assert metrics.fp_per_image == 0.5  # 1 false positive over 2 images
    assert set(metrics.fp_per_image_at_recall.values()) == {None}


def test_evaluate_single_empty_image_gives_zero_counts() -> None:
    metrics = evaluate_detections([_image(1)])

    assert (metrics.images, metrics.objects, metrics.detections) == (1, 0, 0)
    assert (metrics.true_positives, metrics.false_positives, metrics.fp_per_image) == (0, 0, 0.0)
    assert metrics.ap is None and metrics.recall is None


def test_evaluate_objects_without_detections_scores_zero() -> None:
    metrics = evaluate_detections([_image(1, objects=[BOX_A, BOX_B])])

    assert metrics.ap == 0.0 and metrics.ap50 == 0.0  # nothing found, precision 0 everywhere
    assert metrics.recall == 0.0
    assert metrics.lamr == 1.0  # miss rate 1 at every reference
    assert set(metrics.fp_per_image_at_recall.values()) == {None}


# --- FPPI at recall ---------------------------------------------------------------------------


def test_fp_per_image_at_recall_matches_hand_computed_curve() -> None:
    # 4 objects on 5 images; by score across images the detections run
    #   0.95 TP  recall 0.25  FPPI 0.0
    #   0.90 FP               FPPI 0.2
    #   0.85 TP  recall 0.50  FPPI 0.2
    #   0.80 FP               FPPI 0.4
    #   0.70 FP               FPPI 0.6
    #   0.60 TP  recall 0.75  FPPI 0.6
    images = [
        _image(1, objects=[BOX_A, BOX_B], detections=[BOX_A, BOX_C], scores=[0.95, 0.8]),
        _image(2, objects=[BOX_A], detections=[BOX_A, BOX_B], scores=[0.85, 0.9]),
        _image(3, objects=[BOX_C], detections=[BOX_C], scores=[0.6]),
        _image(4, detections=[BOX_A], scores=[0.7]),
        _image(5),
    ]
    metrics = evaluate_detections(images, recall_levels=(0.25, 0.3, 0.5, 0.6, 0.75, 0.8, 1.0))

    assert metrics.fp_per_image_at_recall == {
        "0.25": 0.0,  # first detection
        "0.3": pytest.approx(0.2),  # needs the second true positive, after one false positive
        "0.5": pytest.approx(0.2),
        "0.6": pytest.approx(0.6),  # needs the third, after three false positives
        "0.75": pytest.approx(0.6),
        "0.8": None,  # BOX_B on image 1 is never detected
        "1.0": None,
    }


def test_fp_per_image_at_recall_admits_tied_scores_together() -> None:
    # Equal scores: no threshold keeps the true positive without the false positive.
    images = [_image(1, objects=[BOX_A], detections=[BOX_A], scores=[0.7])]
    images.append(_image(2, detections=[BOX_B], scores=[0.7]))
    metrics = evaluate_detections(images, recall_levels=(1.0,))

    assert metrics.fp_per_image_at_recall == {"1.0": 0.5}  # 1 false positive over 2 images


def test_fp_per_image_at_recall_is_none_for_levels_never_reached() -> None:
    # 4 objects, 2 found: recall tops out at 0.5.
    images = [
        _image(1, objects=[BOX_A, BOX_B, BOX_C], detections=[BOX_A], scores=[0.9]),
        _image(2, objects=[BOX_A], detections=[BOX_A], scores=[0.8]),
    ]
    metrics = evaluate_detections(images)

    assert metrics.fp_per_image_at_recall == {
        "0.3": 0.0,
        "0.4": 0.0,
        "0.5": 0.0,
        "0.6": None,
        "0.7": None,
        "0.8": None,
    }


# --- log-average miss rate --------------------------------------------------------------------


def test_lamr_averages_logs_of_miss_rate_at_nine_fp_per_image_references() -> None:
    # 4 objects on 20 images. By score:
    #   TP         recall 0.25  FPPI 0.00
    #   FP, TP     recall 0.50  FPPI 0.05
    #   3 FP, TP   recall 0.75  FPPI 0.20
    # References 10^(-2 + k/4): 0.010, 0.018, 0.032 read recall 0.25 (FPPI 0)     -> miss 0.75
    #                           0.056, 0.100, 0.178 read recall 0.50 (FPPI < 0.2) -> miss 0.50
    #                           0.316, 0.562, 1.000 read recall 0.75 (FPPI 0.2)   -> miss 0.25
    images = [
        _image(1, objects=[BOX_A, BOX_B], detections=[BOX_A, BOX_B], scores=[0.95, 0.85]),
        _image(2, objects=[BOX_A, BOX_B], detections=[BOX_A], scores=[0.55]),
        _image(3, detections=[BOX_C], scores=[0.9]),
        _image(4, detections=[BOX_C], scores=[0.8]),
        _image(5, detections=[BOX_C], scores=[0.7]),
        _image(6, detections=[BOX_C], scores=[0.6]),
        *_background(7, 14),
    ]
    metrics = evaluate_detections(images)

    # exp(mean(log)) of three 0.75s, three 0.5s and three 0.25s.
    assert metrics.lamr == pytest.approx((0.75 * 0.5 * 0.25) ** (1 / 3))


def test_lamr_uses_miss_rate_one_below_smallest_fp_per_image() -> None:
    # 1 object on 20 images, found with a false positive of equal score: the first reachable
    # point is recall 1 at FPPI 0.05. References 0.010, 0.018, 0.032 lie below it: nothing
    # detected yet, miss 1. The other 6 read recall 1: miss 0, clipped to 1e-10.
    images = [
        _image(1, objects=[BOX_A], detections=[BOX_A, BOX_B], scores=[0.9, 0.9]),
        *_background(2, 19),
    ]
    metrics = evaluate_detections(images)

    assert metrics.lamr == pytest.approx(math.exp(6 / 9 * math.log(1e-10)))


# --- AP through pycocotools -------------------------------------------------------------------


def test_ap_matches_coco_101_point_interpolation_by_hand() -> None:
    # 2 objects; by score TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall
    # 0.5, 0.5, 1. Interpolated (max to the right): 1 up to recall 0.5, 2/3 above it.
    # Of COCO's 101 recall thresholds 0.00..1.00, 51 (0.00..0.50) read 1, 50 read 2/3.
    images = [
        _image(1, objects=[BOX_A], detections=[BOX_A, BOX_C], scores=[0.9, 0.8]),
        _image(2, objects=[BOX_B], detections=[BOX_B], scores=[0.7]),
    ]
    metrics = evaluate_detections(images)

    expected = (51 * 1.0 + 50 * 2 / 3) / 101  # 0.835
    assert metrics.ap50 == pytest.approx(expected)
    assert metrics.ap == pytest.approx(expected)  # exact boxes: same at every IoU up to 0.95


def test_ap_converts_xyxy_boxes_to_coco_xywh() -> None:
    # Object [10, 20, 110, 120], detection [10, 20, 110, 82]: IoU 62/100 = 0.62, a match at
    # COCO's IoU 0.50, 0.55, 0.60 and a miss at the 7 above, so AP = 3/10. Boxes passed on as
    # xyxy instead of xywh would give IoU 0.68 and AP 4/10.
    images = [
        _image(
            1,
            objects=[[10.0, 20.0, 110.0, 120.0]],
            detections=[[10.0, 20.0, 110.0, 82.0]],
            scores=[0.9],
        )
    ]
    metrics = evaluate_detections(images)

    assert metrics.ap50 == pytest.approx(1.0)
    assert metrics.ap == pytest.approx(0.3)


def test_ap_ignores_detections_beyond_100_per_image_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 101 false positives outscore the one true positive; COCO keeps the top 100 only.
    false_positives = [[150.0 + i % 10, 150.0, 160.0 + i % 10, 160.0] for i in range(101)]
    images = [
        _image(
            1,
            objects=[BOX_A],
            detections=[*false_positives, BOX_A],
            scores=[0.9] * 101 + [0.1],
        )
    ]
    with caplog.at_level(logging.WARNING, logger="hardmine.pipeline.evaluate"):
        metrics = evaluate_detections(images)

    assert metrics.ap50 == 0.0  # the true positive is the 102nd detection
    assert metrics.false_positives == 101  # the counts see every detection
    assert "beyond the 100" in caplog.text


# --- results and bad input --------------------------------------------------------------------


def test_to_dict_gives_json_ready_values_with_string_recall_keys() -> None:
    metrics = evaluate_detections([_image(1, detections=[BOX_A], scores=[0.9])])
    as_dict = metrics.to_dict()

    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["ap"] is None  # no objects
    assert list(as_dict["fp_per_image_at_recall"]) == ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8"]
    assert as_dict["fp_per_image"] == 1.0


def test_eval_image_accepts_empty_lists_as_no_boxes() -> None:
    image = EvalImage(image_id=1, width=10, height=10, objects=[], detections=[], scores=[])

    assert image.objects.shape == (0, 4)
    assert image.detections.shape == (0, 4)
    assert image.scores.shape == (0,)


@pytest.mark.parametrize(
    ("detections", "scores", "message"),
    [
        ([BOX_A, BOX_B], [0.9], "one score per detection"),
        ([BOX_A], [1.2], r"probabilities in \[0, 1\]"),
        ([BOX_A], [float("nan")], r"probabilities in \[0, 1\]"),
        ([[0.0, 0.0, 10.0]], [0.9], r"shape \(N, 4\)"),
        ([[10.0, 0.0, 5.0, 10.0]], [0.9], "x2 < x1"),
        ([[0.0, 0.0, float("inf"), 10.0]], [0.9], "NaN or infinite"),
    ],
)
def test_eval_image_rejects_malformed_detections(
    detections: list[list[float]], scores: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EvalImage(1, 200, 200, np.zeros((0, 4)), np.array(detections), np.array(scores))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operating_threshold": 0.0}, "operating_threshold must be"),
        ({"operating_threshold": 1.0}, "operating_threshold must be"),
        ({"iou_threshold": 0.0}, "iou_threshold must be"),
        ({"recall_levels": (0.5, 0.0)}, "recall_levels must lie"),
        ({"recall_levels": (1.5,)}, "recall_levels must lie"),
    ],
)
def test_evaluate_rejects_out_of_range_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_detections([_image(1)], **kwargs)


def test_evaluate_rejects_empty_image_list_and_repeated_ids() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        evaluate_detections([])
    with pytest.raises(ValueError, match=r"unique; got \[3\]"):
        evaluate_detections([_image(3), _image(3)])
