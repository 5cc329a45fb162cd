import numpy as np
import pytest
import torch

from hardmine.errors import HardmineError
from hardmine.miners.windows import (
    WindowConfig,
    background_mask,
    random_background_windows,
    window_shapes,
)


def test_window_shapes_follow_the_object_statistics() -> None:
    # 40 square objects of 20 px and 40 of 60 px: two size quantiles, one aspect ratio.
    objects = np.array([[0, 0, 20, 20]] * 40 + [[0, 0, 60, 60]] * 40, dtype=float)
    shapes = window_shapes(WindowConfig(size_count=2, aspect_count=1), objects)
    assert shapes == [(20.0, 20.0), (60.0, 60.0)]


def test_window_shapes_cross_given_sizes_and_ratios() -> None:
    shapes = window_shapes(
        WindowConfig(sizes_px=(32.0,), aspect_ratios=(0.5, 2.0)), np.zeros((0, 4))
    )
    widths = [round(w, 2) for w, _ in shapes]
    assert widths == [22.63, 45.25] and all(round(w * h) == 1024 for w, h in shapes)


def test_window_shapes_clamp_tiny_objects_to_the_minimum_size() -> None:
    objects = np.array([[0, 0, 4, 4]] * 5, dtype=float)
    assert window_shapes(WindowConfig(size_count=1, aspect_count=1), objects) == [(16.0, 16.0)]


def test_window_shapes_widen_narrow_shapes_to_the_minimum_side() -> None:
    # 16 px size at ratio 0.25 would be 8 x 32: widened to 16 x 64, the ratio kept.
    shapes = window_shapes(WindowConfig(sizes_px=(16.0,), aspect_ratios=(0.25,)), np.zeros((0, 4)))
    assert shapes == [(16.0, 64.0)]


def test_window_shapes_without_objects_or_sizes_say_what_to_pass() -> None:
    with pytest.raises(HardmineError, match="--window-sizes"):
        window_shapes(WindowConfig(), np.zeros((0, 4)))


def test_background_mask_keeps_windows_under_the_iou_bar() -> None:
    windows = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [50.0, 50, 60, 60]])
    objects = torch.tensor([[0.0, 0, 10, 10]])
    # IoUs with the object: 1.0, 0.33, 0.
    assert background_mask(windows, objects, 0.3).tolist() == [False, False, True]
    assert background_mask(windows, objects, 0.5).tolist() == [False, True, True]


def test_background_mask_cover_bar_rejects_windows_on_a_large_objects_parts() -> None:
    # A 20 px window inside a 100 px object: IoU 0.04, yet all of it is object.
    windows = torch.tensor([[10.0, 10, 30, 30], [90.0, 90, 110, 110], [200.0, 0, 220, 20]])
    objects = torch.tensor([[0.0, 0, 100, 100]])
    assert background_mask(windows, objects, 0.3).tolist() == [True, True, True]
    # Covers: 1.0, 0.25, 0.
    assert background_mask(windows, objects, 0.3, max_cover=0.5).tolist() == [False, True, True]


def test_background_mask_on_an_image_with_no_objects_is_all_background() -> None:
    windows = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10]])
    assert background_mask(windows, torch.zeros(0, 4)).tolist() == [True, True]


def test_random_background_windows_fit_the_image_and_avoid_objects() -> None:
    objects = torch.tensor([[0.0, 0.0, 50.0, 50.0]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    boxes = random_background_windows([(20.0, 20.0)], 100, 80, objects, 30, generator)
    assert len(boxes) == 30
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 100).all() and (boxes[:, 3] <= 80).all()
    assert background_mask(boxes, objects.float()).all()


def test_random_background_windows_larger_than_the_image_give_none() -> None:
    boxes = random_background_windows(
        [(200.0, 200.0)], 100, 80, torch.zeros(0, 4), 5, torch.Generator()
    )
    assert boxes.shape == (0, 4)
