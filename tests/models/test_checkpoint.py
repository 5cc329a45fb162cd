from pathlib import Path

import pytest
import torch

from hardmine.models import (
    ModelError,
    RoIWindowNet,
    WindowNet,
    load_checkpoint,
    read_state_dict,
    save_checkpoint,
)

META = {
    "run": "demo",
    "round": 2,
    "loss": "ohem",
    "config": {"lr": 0.001, "flip": True},
    "shapes": [[64, 64]],
}


def test_checkpoint_windownet_round_trip_keeps_weights_scores_and_meta(
    tmp_path: Path, window_net: WindowNet, random_image: torch.Tensor
) -> None:
    path = tmp_path / "round" / "2.pt"  # the missing folder is created
    save_checkpoint(path, window_net, META)
    model, meta = load_checkpoint(path, "cpu")

    assert type(model) is WindowNet and not model.training
    assert meta == META
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [30.0, 10.0, 130.0, 90.0]])
    assert torch.equal(
        model.score_windows(random_image, boxes), window_net.score_windows(random_image, boxes)
    )


def test_checkpoint_resnet18_round_trip_rebuilds_roiwindownet(
    tmp_path: Path, roi_net: RoIWindowNet
) -> None:
    save_checkpoint(tmp_path / "r.pt", roi_net, {})
    model, _ = load_checkpoint(tmp_path / "r.pt")
    assert type(model) is RoIWindowNet
    assert torch.equal(model.head[1].weight, roi_net.head[1].weight)


def test_load_checkpoint_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nowhere\.pt does not exist or is not a file"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_load_checkpoint_garbage_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(ModelError, match=r"garbage\.pt could not be read as a torch file"):
        load_checkpoint(path)


def test_load_checkpoint_bare_state_dict_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(WindowNet().state_dict(), path)
    with pytest.raises(ModelError, match=r"bare\.pt is not a hardmine checkpoint"):
        load_checkpoint(path)


def test_save_checkpoint_meta_with_path_object_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"meta\['images'\] is a PosixPath; .*convert paths"):
        save_checkpoint(tmp_path / "x.pt", WindowNet(), {"images": tmp_path})


def test_read_state_dict_of_non_tensor_values_raises(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ModelError, match=r"numbers\.pt does not hold a state dict"):
        read_state_dict(path)
