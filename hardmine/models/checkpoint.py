"""Checkpoint files: the only place in hardmine that calls torch.save and torch.load.

A checkpoint is a dict of plain types and tensors, read back with `weights_only=True` so a file
cannot run code: format tag, backbone name (which class to rebuild), state dict, and the caller's
meta (plain types only).
"""

import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from hardmine.models.device import resolve_device
from hardmine.models.errors import ModelError
from hardmine.models.network import RoIWindowNet, WindowNet, backbone_class

log = logging.getLogger(__name__)

FORMAT = "hardmine-checkpoint-1"
PLAIN_TYPES = (str, int, float, bool, type(None))


def save_checkpoint(path: str | Path, model: WindowNet | RoIWindowNet, meta: dict) -> None:
    """Writes a model and its meta to `path` (parent folders are created).

    Args:
        path: file to write; replaced if it exists.
        model: a network from `build_model`.
        meta: run, round, config...: str, int, float, bool, None, and lists or dicts of them.
    """
    _check_plain(meta, "meta")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {"format": FORMAT, "backbone": model.backbone, "state_dict": state, "meta": meta}
    torch.save(payload, path)
    log.debug("checkpoint=%s backbone=%s tensors=%d", path, model.backbone, len(state))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuilds the model saved by `save_checkpoint`.

    Args:
        path: checkpoint file.
        device: where the model goes: a torch device, or a name for `resolve_device`.

    Returns:
        (model in eval mode on `device`, meta).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    payload = read_file(path, "cpu")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(
            f"{path} is not a hardmine checkpoint (expected format {FORMAT!r}); "
            "pass a file written by save_checkpoint"
        )

    model = backbone_class(payload["backbone"])()
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise ModelError(f"{path} does not fit a {payload['backbone']} network: {error}") from None
    return model.to(device).eval(), payload["meta"]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a bare state dict (e.g. torchvision's resnet18 .pth) onto the CPU.

    Args:
        path: a file holding a dict of parameter name to tensor.

    Returns:
        The dict.
    """
    state = read_file(path, "cpu")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict (name -> tensor); got {type(state)}")
    return state


def read_file(path: str | Path, device: torch.device | str) -> object:
    """torch.load with weights_only=True; every failure becomes a ModelError naming the path."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist or is not a file; check the path")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise ModelError(
            f"{path} could not be read as a torch file ({type(error).__name__}: {error}); "
            "it may be truncated, or not written by torch.save"
        ) from None


def _check_plain(value: object, where: str) -> None:
    """Rejects meta values that weights_only loading would refuse."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelError(f"{where} keys must be strings, got {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, PLAIN_TYPES):
        raise ModelError(
            f"{where} is a {type(value).__name__}; checkpoint meta holds only str, int, float, "
            "bool, None, lists and dicts (convert paths and dataclasses first)"
        )
