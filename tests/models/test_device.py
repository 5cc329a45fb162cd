import pytest
import torch

from hardmine.models import ModelError, resolve_device


def test_resolve_device_cpu_and_auto_without_gpu_give_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_cuda_without_gpu_raises_with_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ModelError, match="'cuda' was asked for but this torch sees no CUDA GPU.*--device cpu"
    ):
        resolve_device("cuda")


def test_resolve_device_unknown_name_lists_choices() -> None:
    with pytest.raises(
        ModelError, match=r"unknown device 'gpu'; choose one of \['cpu', 'cuda', 'auto'\]"
    ):
        resolve_device("gpu")
