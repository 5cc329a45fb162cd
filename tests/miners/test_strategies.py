import pytest
import torch

from hardmine.errors import HardmineError
from hardmine.miners.base import MiningConfig, shard_quota
from hardmine.miners.random_windows import RandomStrategy
from hardmine.miners.registry import STRATEGIES, build_strategy
from hardmine.miners.threshold import ThresholdStrategy
from hardmine.miners.topk import TopKStrategy

# Five windows on one image: 0 and 1 overlap almost entirely (IoU 0.82), the rest are apart.
BOXES = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [1.0, 0.0, 11.0, 10.0],
        [50.0, 50.0, 60.0, 60.0],
        [80.0, 0.0, 90.0, 10.0],
        [0.0, 80.0, 10.0, 90.0],
    ]
)
SCORES = torch.tensor([0.9, 0.8, 0.6, 0.3, 0.95])
ALL_BACKGROUND = torch.ones(5, dtype=torch.bool)


def _select(strategy: type, background: torch.Tensor = ALL_BACKGROUND, **config) -> list[int]:
    chosen = strategy(MiningConfig(**config)).select(
        BOXES, SCORES, background, torch.Generator().manual_seed(0)
    )
    return chosen.tolist()


def test_threshold_keeps_background_windows_over_t_highest_first_after_nms() -> None:
    # Over 0.5: 4 (0.95), 0 (0.9), 1 (0.8, suppressed by 0), 2 (0.6).
    assert _select(ThresholdStrategy, score_threshold=0.5) == [4, 0, 2]


def test_threshold_skips_windows_overlapping_objects() -> None:
    background = torch.tensor([True, True, True, True, False])
    assert _select(ThresholdStrategy, background=background, score_threshold=0.5) == [0, 2]


def test_threshold_with_all_scores_below_t_selects_nothing() -> None:
    assert _select(ThresholdStrategy, score_threshold=0.99) == []


def test_per_image_cap_limits_each_strategy() -> None:
    assert _select(ThresholdStrategy, score_threshold=0.5, per_image_cap=2) == [4, 0]
    assert len(_select(RandomStrategy, score_threshold=0.5, per_image_cap=2)) == 2


def test_topk_takes_k_hardest_whatever_their_score() -> None:
    # 4 and 0 are the two highest; with k=4: 4, 0, (1 suppressed), 2, 3.
    assert _select(TopKStrategy, topk=2) == [4, 0]
    assert _select(TopKStrategy, topk=4, score_threshold=0.99) == [4, 0, 2, 3]


def test_random_takes_as_many_as_threshold_would_from_the_background() -> None:
    background = torch.tensor([True, True, True, True, False])
    # threshold at 0.5 keeps 2 background windows (0, 2), so random keeps 2 background windows.
    chosen = _select(RandomStrategy, background=background, score_threshold=0.5)
    assert len(chosen) == 2 and 4 not in chosen


def test_random_with_nothing_over_threshold_takes_nothing() -> None:
    assert _select(RandomStrategy, score_threshold=0.99) == []


def test_strategies_on_an_image_with_no_windows_select_nothing() -> None:
    for strategy in STRATEGIES.values():
        chosen = strategy(MiningConfig()).select(
            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.bool), torch.Generator()
        )
        assert chosen.tolist() == []


def test_trim_keeps_the_highest_scores_within_the_quota() -> None:
    strategy = build_strategy(MiningConfig(strategy="threshold"))
    kept = strategy.trim(torch.tensor([0.6, 0.9, 0.7]), 2, torch.Generator())
    assert sorted(kept.tolist()) == [1, 2]


def test_shard_quota_shares_the_round_cap_by_images() -> None:
    assert shard_quota(100, 32, 160) == 20
    assert shard_quota(100, 1, 3) == 34  # rounded up: shards never starve
    assert shard_quota(100, 5, 0) == 0


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(HardmineError, match=r"unknown mining strategy 'hardest'.*random"):
        MiningConfig(strategy="hardest")


def test_threshold_outside_0_1_is_rejected() -> None:
    with pytest.raises(HardmineError, match="score_threshold must be in"):
        MiningConfig(score_threshold=1.5)
