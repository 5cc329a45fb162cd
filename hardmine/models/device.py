"""Choosing the device that trains and scores."""

import torch

from hardmine.models.errors import ModelError

DEVICE_NAMES = ("cpu", "cuda", "auto")


def resolve_device(name: str = "auto") -> torch.device:
    """Turns a device name into a torch device.

    Args:
        name: "cpu", "cuda" (the current GPU), "cuda:N", or "auto" (a GPU when there is one).

    Returns:
        The device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not name.startswith("cuda:"):
        raise ModelError(f"unknown device {name!r}; choose one of {list(DEVICE_NAMES)} or cuda:N")

    if not torch.cuda.is_available():
        raise ModelError(
            f"device {name!r} was asked for but this torch sees no CUDA GPU "
            f"(torch {torch.__version__}); use --device cpu or --device auto"
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ModelError(
            f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible"
        )
    return device
