"""`threshold`: every background window scoring at least t (Sung & Poggio's bootstrap)."""

import torch

from hardmine.miners.base import Strategy


class ThresholdStrategy(Strategy):
    name = "threshold"

    def ranked(
        self, scores: torch.Tensor, background: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        chosen = (background & (scores >= self.config.score_threshold)).nonzero().squeeze(1)
        return chosen[torch.argsort(scores[chosen], descending=True, stable=True)]
