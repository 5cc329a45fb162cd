import pytest
import torch

from hardmine.models import (
    DENSE_TOLERANCE,
    ModelError,
    RoIWindowNet,
    WindowNet,
    crop_scores,
    dense_scores,
    grid_windows,
    normalize,
    scoring,
)

# Square, non-square, smaller and larger than the 64 px crop (sampling ratios 1 to 4), and one
# exactly the image's size.
SHAPES = [(64, 64), (32, 48), (100, 70), (150, 90), (40, 230), (157, 101)]


def test_dense_scores_equal_crop_scores_within_tolerance(
    window_net: WindowNet, random_image
) -> None:
    image = normalize(random_image)
    boxes, dense = dense_scores(window_net, image, SHAPES[:5])
    per_window = crop_scores(window_net, image, boxes, batch_size=7)
    assert len(boxes) == len(dense) > 50
    assert dense.std() > 1e-3  # the scores differ, so agreement means something
    assert (dense - per_window).abs().max() <= DENSE_TOLERANCE


def test_dense_scores_window_of_image_size_gives_exactly_one(
    window_net: WindowNet, random_image
) -> None:
    boxes, scores = dense_scores(window_net, random_image, [(157, 101)])
    assert boxes.tolist() == [[0.0, 0.0, 157.0, 101.0]]
    assert (
        abs(scores.item() - crop_scores(window_net, random_image, boxes).item()) <= DENSE_TOLERANCE
    )


def test_dense_scores_tiled_and_resampled_levels_equal_crop_scores(
    window_net: WindowNet, random_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiles of 3 outputs force overlapping tiles; max_level_pixels=1 forces RoIAlign resampling.
    monkeypatch.setattr(scoring, "TILE_POSITIONS", 3)
    boxes, whole = dense_scores(window_net, random_image, SHAPES)
    _, resampled = dense_scores(window_net, random_image, SHAPES, max_level_pixels=1)
    per_window = crop_scores(window_net, random_image, boxes, batch_size=64)
    assert (whole - per_window).abs().max() <= DENSE_TOLERANCE
    assert (resampled - per_window).abs().max() <= DENSE_TOLERANCE


def test_dense_scores_restores_training_mode(window_net: WindowNet, random_image) -> None:
    window_net.train()
    dense_scores(window_net, random_image, [(64, 64)])
    assert window_net.training


def test_grid_windows_counts_hand_computed_and_stay_inside() -> None:
    # 150 x 100 image, 64 px windows at step 16: x1 in 0..80 (6), y1 in 0..32 (3) -> 18.
    boxes = grid_windows(100, 150, [(64, 64)])
    assert len(boxes) == 18
    assert boxes[:, 2].max() == 144 and boxes[:, 3].max() == 96
    assert boxes[1].tolist() == [16.0, 0.0, 80.0, 64.0]


@pytest.mark.parametrize("backbone", ["windownet", "resnet18"])
def test_score_grid_windows_larger_than_image_yield_none(
    backbone: str, window_net: WindowNet, roi_net: RoIWindowNet, random_image
) -> None:
    model = window_net if backbone == "windownet" else roi_net
    boxes, scores = model.score_grid(random_image, [(158, 50), (50, 102)])
    assert boxes.shape == (0, 4)
    assert scores.shape == (0,)


def test_score_grid_skips_only_the_shape_larger_than_image(
    window_net: WindowNet, random_image
) -> None:
    boxes, _ = window_net.score_grid(random_image, [(400, 400), (64, 64)])
    assert torch.equal(boxes, grid_windows(101, 157, [(64, 64)]))


def test_roi_grid_scores_equal_roi_scores_on_grid_windows(roi_net: RoIWindowNet) -> None:
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    boxes, scores = roi_net.score_grid(image, [(64, 64), (32, 48)])
    assert torch.equal(boxes, grid_windows(96, 128, [(64, 64), (32, 48)]))
    assert (
        scores - roi_net.score_windows(image, boxes, batch_size=5)
    ).abs().max() <= DENSE_TOLERANCE


@pytest.mark.parametrize("shape", [(0, 64), (64, -1), (64,), ("64", 64)])
def test_dense_scores_bad_window_shape_raises(window_net: WindowNet, random_image, shape) -> None:
    with pytest.raises(ModelError, match="width_px, height_px"):
        dense_scores(window_net, random_image, [shape])


def test_crop_scores_image_channels_last_float_raises(window_net: WindowNet) -> None:
    with pytest.raises(ModelError, match=r"\(3, H, W\), float from normalize\(\) or uint8"):
        crop_scores(window_net, torch.zeros(20, 20, 3), torch.zeros(0, 4))


def test_crop_scores_zero_batch_size_raises(window_net: WindowNet, random_image) -> None:
    with pytest.raises(ModelError, match="batch_size.*got 0"):
        crop_scores(window_net, random_image, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), batch_size=0)


def test_dense_scores_level_short_by_float_rounding_falls_back_to_resampling(
    window_net: WindowNet, random_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate F.interpolate flooring H * scale one pixel short, which float rounding can cause.
    resize = scoring._resize
    monkeypatch.setattr(scoring, "_resize", lambda *args: resize(*args)[:, :-1, :-1])
    # The image-sized window needs every row of its 64-row level; the 64 px level has spare rows.
    boxes, dense = dense_scores(window_net, random_image, [(157, 101), (64, 64)])
    assert len(boxes) == 1 + 18
    assert (dense - crop_scores(window_net, random_image, boxes)).abs().max() <= DENSE_TOLERANCE
