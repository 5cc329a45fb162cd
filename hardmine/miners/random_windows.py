"""`random`: the control. Random background windows, as many as `threshold` would admit.

Matching the count image by image isolates what mining is about: not how many negatives a
round adds, but which.
"""

import torch

from hardmine.miners.base import MiningConfig, Strategy
from hardmine.miners.threshold import ThresholdStrategy


class RandomStrategy(Strategy):
    name = "random"
    kind = "random"

    def __init__(self, config: MiningConfig) -> None:
        super().__init__(config)
        self.threshold = ThresholdStrategy(config)

    def ranked(
        self, scores: torch.Tensor, background: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        chosen = background.nonzero().squeeze(1)
        return chosen[torch.randperm(len(chosen), generator=generator)]

    def select(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        background: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        count = len(self.threshold.select(boxes, scores, background, generator))
        return super().select(boxes, scores, background, generator)[:count]

    def trim(self, scores: torch.Tensor, quota: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(scores), generator=generator)[:quota]
