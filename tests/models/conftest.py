"""Fixtures for the models tests: small seeded networks and images."""

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from hardmine.models import RoIWindowNet, WindowNet


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Runs each test on one intra-op thread.

    With another process busy on the 2 cores, two threads' barriers stretched this suite from
    8 s to 46 s; on an idle machine one thread costs little on these tiny inputs.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_batchnorm(model: nn.Module, spread: float) -> nn.Module:
    """Non-trivial BatchNorm statistics (eval mode is then not the identity), spread scores."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        # A freshly initialized head puts every score near 0.5; spread them over 0-1.
        model.classifier.weight.mul_(spread)
    return model


@pytest.fixture
def window_net() -> WindowNet:
    torch.manual_seed(0)
    return randomize_batchnorm(WindowNet(), spread=30).eval()


@pytest.fixture
def roi_net() -> RoIWindowNet:
    torch.manual_seed(0)
    return randomize_batchnorm(RoIWindowNet(), spread=1).eval()


@pytest.fixture
def random_image() -> torch.Tensor:
    """uint8 (3, 101, 157): odd sizes on purpose."""
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (3, 101, 157), dtype=torch.uint8, generator=generator)
