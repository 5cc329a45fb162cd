import numpy as np
import pytest
import torch

from hardmine.models import ModelError, crop_windows, normalize, sampling_ratio


def test_normalize_channels_last_numpy_equals_channels_first_tensor() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    from_hwc = normalize(image)
    from_chw = normalize(torch.from_numpy(image).permute(2, 0, 1))
    assert from_hwc.shape == (3, 5, 7)
    assert from_hwc.dtype == torch.float32
    assert torch.equal(from_hwc, from_chw)


def test_normalize_float_image_raises_with_fix() -> None:
    with pytest.raises(ModelError, match="uint8 RGB.*got torch.float32"):
        normalize(torch.zeros(3, 4, 4))


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(64, 64, 1), (10, 10, 1), (65, 10, 2), (10, 129, 3), (200, 10, 4), (1000, 5, 4)],
)
def test_sampling_ratio_grows_with_longest_side_and_caps_at_4(
    width: float, height: float, expected: int
) -> None:
    assert sampling_ratio(width, height) == expected


def test_crop_windows_integer_64px_window_equals_image_slice() -> None:
    # aligned RoIAlign at ratio 1 samples exactly the pixel centres of a 64 px window.
    image = torch.rand(3, 90, 100)
    crops = crop_windows(image, torch.tensor([[10.0, 20.0, 74.0, 84.0], [0.0, 0.0, 64.0, 64.0]]))
    assert torch.allclose(crops[0], image[:, 20:84, 10:74], atol=1e-6)
    assert torch.allclose(crops[1], image[:, :64, :64], atol=1e-6)


def test_crop_windows_large_window_averages_instead_of_aliasing() -> None:
    # A 1 px checkerboard at 4x the crop size: point sampling aliases, averaging gives 0.5.
    yy, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    image = ((yy + xx) % 2).float().expand(3, 256, 256)
    crops = crop_windows(image, torch.tensor([[0.0, 0.0, 256.0, 256.0]]))
    assert torch.allclose(crops, torch.full_like(crops, 0.5), atol=1e-6)


def test_crop_windows_no_boxes_returns_empty_batch() -> None:
    crops = crop_windows(torch.rand(3, 30, 30), torch.zeros(0, 4))
    assert crops.shape == (0, 3, 64, 64)


def test_crop_windows_box_with_x2_before_x1_raises() -> None:
    with pytest.raises(ModelError, match=r"boxes\[1\].*x2 <= x1.*x2, y2 exclusive"):
        crop_windows(torch.rand(3, 30, 30), torch.tensor([[0, 0, 5, 5], [9, 0, 4, 5]]))


def test_crop_windows_boxes_not_n_by_4_raise() -> None:
    with pytest.raises(ModelError, match=r"\(N, 4\).*got \(2, 3\)"):
        crop_windows(torch.rand(3, 30, 30), torch.zeros(2, 3))
