"""`topk`: the k highest-scoring background windows of each image, whatever their score."""

import torch

from hardmine.miners.base import Strategy


class TopKStrategy(Strategy):
    name = "topk"

    def ranked(
        self, scores: torch.Tensor, background: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        chosen = background.nonzero().squeeze(1)
        return chosen[torch.argsort(scores[chosen], descending=True, stable=True)]

    def limit(self) -> int:
        return min(self.config.topk, self.config.per_image_cap)
