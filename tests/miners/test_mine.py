from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hardmine.miners.base import MiningConfig
from hardmine.miners.mine import MiningImage, dedupe, mine_shard
from hardmine.miners.registry import build_strategy


class BrightnessScorer:
    """Scores a window by the mean brightness under it (0-1): a stand-in detector."""

    def score_grid(self, image: torch.Tensor, shapes: list) -> tuple[torch.Tensor, torch.Tensor]:
        gray = image.float().mean(dim=-1) / 255  # (H, W) from (H, W, 3)
        boxes, scores = [], []
        for w, h in shapes:
            for y in range(0, gray.shape[0] - int(h) + 1, int(h) // 2):
                for x in range(0, gray.shape[1] - int(w) + 1, int(w) // 2):
                    boxes.append([x, y, x + w, y + h])
                    scores.append(gray[y : y + int(h), x : x + int(w)].mean())
        return torch.tensor(boxes, dtype=torch.float32), torch.stack(scores)


def _image(path: Path, bright: list[tuple[int, int]]) -> str:
    """A black 64x64 image with white 16x16 squares at the given corners."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    for x, y in bright:
        pixels[y : y + 16, x : x + 16] = 255
    Image.fromarray(pixels).save(path)
    return str(path)


def _mine(images: list[MiningImage], quota: int = 100, **config):
    strategy = build_strategy(MiningConfig(score_threshold=0.9, **config))
    return mine_shard(BrightnessScorer(), images, [(16.0, 16.0)], strategy, quota, seed=0)


def test_mine_admits_bright_background_windows_and_skips_objects(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", [(0, 0), (32, 32)])
    # The square at (32, 32) is an object; the one at (0, 0) is a look-alike in the background.
    objects = torch.tensor([[32.0, 32.0, 48.0, 48.0]], dtype=torch.float64)
    result = _mine([MiningImage(1, path, objects)])
    assert [c.box for c in result.candidates] == [(0.0, 0.0, 16.0, 16.0)]
    assert result.windows_scored == 49 and result.images == 1  # 7 x 7 positions, stride 8
    assert result.candidates[0].loss > 2  # -log(1 - 0.9+)


def test_mine_on_an_image_with_no_objects_treats_everything_as_background(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", [(0, 0), (32, 32)])
    result = _mine([MiningImage(1, path, torch.zeros(0, 4))])
    assert len(result.candidates) == 2


def test_mine_with_all_scores_below_threshold_admits_nothing(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", [])
    result = _mine([MiningImage(1, path, torch.zeros(0, 4))])
    assert result.candidates == [] and result.windows_scored == 49


def test_mine_does_not_add_a_window_the_pool_holds_and_counts_it_remined(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", [(0, 0), (32, 32)])
    pooled = [(77, (1.0, 0.0, 17.0, 16.0))]  # IoU 0.88 with the window at (0, 0)
    result = _mine([MiningImage(1, path, torch.zeros(0, 4), pooled)])
    assert [c.box for c in result.candidates] == [(32.0, 32.0, 48.0, 48.0)]
    assert result.remined == [77]


def test_mine_skips_unreadable_images_and_counts_them(tmp_path: Path) -> None:
    good = _image(tmp_path / "a.png", [(0, 0)])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    images = [
        MiningImage(1, str(tmp_path / "bad.jpg"), torch.zeros(0, 4)),
        MiningImage(2, good, torch.zeros(0, 4)),
    ]
    result = _mine(images)
    assert (result.images, result.skipped_images) == (1, 1)
    assert [c.image_id for c in result.candidates] == [2]


def test_mine_trims_a_shard_to_its_quota_keeping_the_hardest(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", [(0, 0), (32, 32)])
    result = _mine([MiningImage(1, path, torch.zeros(0, 4))], quota=1)
    assert len(result.candidates) == 1 and result.selected == 2


def test_dedupe_with_an_empty_pool_keeps_everything() -> None:
    fresh, remined = dedupe(torch.tensor([[0.0, 0, 10, 10]]), [], 0.7)
    assert fresh.tolist() == [True] and remined == []
