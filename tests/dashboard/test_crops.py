import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from hardmine.dashboard.crops import CropError, crop_bounds, crop_jpeg, crop_size


def test_crop_bounds_grow_the_box_by_a_tenth_per_side() -> None:
    # 40x20 box: 4 px more left and right, 2 px more top and bottom.
    assert crop_bounds((40.0, 30.0, 80.0, 50.0), 160, 120) == (36, 28, 84, 52)


def test_crop_bounds_stop_at_the_image_border() -> None:
    assert crop_bounds((0.0, 0.0, 160.0, 120.0), 160, 120) == (0, 0, 160, 120)
    assert crop_bounds((150.0, 110.0, 160.0, 120.0), 160, 120) == (149, 109, 160, 120)


def test_crop_bounds_of_a_box_with_no_area_are_one_pixel() -> None:
    assert crop_bounds((10.0, 10.0, 10.0, 10.0), 160, 120) == (10, 10, 11, 11)


def test_crop_size_scales_the_longer_side_to_160_px_and_never_enlarges() -> None:
    assert crop_size((0, 0, 330, 220)) == (160, 107)
    assert crop_size((0, 0, 100, 400)) == (40, 160)
    assert crop_size((5, 5, 53, 29)) == (48, 24)


def test_crop_of_an_rgba_png_is_an_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    PILImage.new("RGBA", (64, 48), (255, 0, 0, 128)).save(path)
    crop = PILImage.open(io.BytesIO(crop_jpeg(path, (8.0, 8.0, 48.0, 28.0))))
    # 40x20 grows to 48x24.
    assert (crop.format, crop.mode, crop.size) == ("JPEG", "RGB", (48, 24))


def test_crop_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(CropError, match=r"gone\.jpg is missing"):
        crop_jpeg(tmp_path / "gone.jpg", (0.0, 0.0, 10.0, 10.0))
