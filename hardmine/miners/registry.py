"""CLI names of the mining strategies."""

from hardmine.miners.base import MiningConfig, Strategy
from hardmine.miners.random_windows import RandomStrategy
from hardmine.miners.threshold import ThresholdStrategy
from hardmine.miners.topk import TopKStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (ThresholdStrategy, TopKStrategy, RandomStrategy)
}


def build_strategy(config: MiningConfig) -> Strategy:
    return STRATEGIES[config.strategy](config)
