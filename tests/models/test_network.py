import math

import pytest
import torch
from torchvision.models import resnet18

from hardmine.models import (
    BACKBONES,
    ModelError,
    RoIWindowNet,
    WindowNet,
    build_model,
    normalize,
)


def test_windownet_dense_output_equals_forward_on_each_patch(window_net: WindowNet) -> None:
    # 64 + 16 * 3 + 15 rows: the network computes a 5th row from a truncated field; dense drops it.
    level = torch.randn(1, 3, 127, 96)
    with torch.no_grad():
        dense = window_net.dense(level)[0]
        patches = [
            level[0, :, 16 * i : 16 * i + 64, 16 * j : 16 * j + 64]
            for i in range(4)
            for j in range(3)
        ]
        per_patch = window_net(torch.stack(patches)).view(4, 3)
    assert dense.shape == (4, 3)
    assert torch.allclose(dense, per_patch, atol=1e-5)


def test_windownet_forward_wrong_crop_size_raises(window_net: WindowNet) -> None:
    with pytest.raises(ModelError, match=r"\(N, 3, 64, 64\).*got \(2, 3, 32, 32\).*crop_windows"):
        window_net(torch.zeros(2, 3, 32, 32))


def test_windownet_dense_level_smaller_than_crop_raises(window_net: WindowNet) -> None:
    with pytest.raises(ModelError, match="h, w >= 64"):
        window_net.dense(torch.zeros(1, 3, 63, 100))


@pytest.mark.parametrize("model_class", [WindowNet, RoIWindowNet])
def test_init_prior_sets_bias_to_prior_probability(model_class: type) -> None:
    model = model_class()
    model.init_prior(0.01)
    assert math.isclose(torch.sigmoid(model.classifier.bias).item(), 0.01, rel_tol=1e-5)


def test_init_prior_outside_zero_one_raises() -> None:
    with pytest.raises(ModelError, match="strictly between 0 and 1, got 1.5"):
        WindowNet().init_prior(1.5)


def test_build_model_unknown_backbone_lists_known_names() -> None:
    with pytest.raises(ModelError, match=r"unknown backbone 'vgg16'.*\['resnet18', 'windownet'\]"):
        build_model("vgg16")


def test_build_model_each_backbone_builds_its_class() -> None:
    for name, model_class in BACKBONES.items():
        model = build_model(name)
        assert type(model) is model_class
        assert model.backbone == name


def test_build_model_resnet18_weights_load_trunk(tmp_path) -> None:
    torch.manual_seed(3)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    model = build_model("resnet18", weights=str(path))
    assert torch.equal(model.trunk.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.trunk.layer3[1].bn2.running_var, reference.layer3[1].bn2.running_var)


def test_build_model_resnet18_weights_from_other_network_raise(tmp_path) -> None:
    path = tmp_path / "windownet.pth"
    torch.save(WindowNet().state_dict(), path)
    with pytest.raises(
        ModelError, match=r"windownet.pth lacks 90 of the 90 resnet18 trunk tensors"
    ):
        build_model("resnet18", weights=path)


def test_build_model_resnet18_weights_wrong_shape_raise(tmp_path) -> None:
    state = resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    path = tmp_path / "gray.pth"
    torch.save(state, path)
    with pytest.raises(
        ModelError, match=r"conv1.weight has shape \(64, 1, 7, 7\).*\(64, 3, 7, 7\)"
    ):
        build_model("resnet18", weights=path)


def test_build_model_windownet_weights_round_trip(tmp_path, window_net: WindowNet) -> None:
    path = tmp_path / "windownet.pth"
    torch.save(window_net.state_dict(), path)
    model = build_model("windownet", weights=path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), window_net.state_dict().values(), strict=True)
    )


def test_roiwindownet_one_window_at_a_time_equals_all_at_once(roi_net: RoIWindowNet) -> None:
    generator = torch.Generator().manual_seed(2)
    image = normalize(torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=generator))
    corners = torch.rand(12, 2, generator=generator) * torch.tensor([100.0, 70.0])
    sizes = 8 + torch.rand(12, 2, generator=generator) * 60
    boxes = torch.cat([corners, corners + sizes], dim=1)

    together = roi_net.score_windows(image, boxes)
    alone = torch.cat([roi_net.score_windows(image, box[None]) for box in boxes])
    assert together.std() > 1e-3  # the scores differ, so agreement means something
    assert (together - alone).abs().max() <= 1e-4


def test_roiwindownet_forward_batched_tensor_equals_list(roi_net: RoIWindowNet) -> None:
    images = torch.randn(2, 3, 96, 128)
    boxes = [
        torch.tensor([[0.0, 0.0, 64.0, 64.0]]),
        torch.tensor([[30.0, 20.0, 90.0, 96.0], [5, 5, 40, 50]]),
    ]
    with torch.no_grad():
        batched = roi_net(images, boxes)
        listed = roi_net(list(images), boxes)
    assert batched.shape == (3,)
    assert torch.allclose(batched, listed, atol=1e-5)


def test_roiwindownet_forward_images_and_boxes_count_differ_raises(roi_net: RoIWindowNet) -> None:
    with pytest.raises(ModelError, match="2 images but 1 box tensors"):
        roi_net(torch.randn(2, 3, 64, 64), [torch.zeros(0, 4)])


def test_windownet_folded_equals_eval_forward_and_leaves_model_training(
    window_net: WindowNet,
) -> None:
    model = window_net
    crops = torch.randn(5, 3, 64, 64)
    folded = model.folded()
    with torch.no_grad():
        expected = model.eval()(crops)
        model.train()
        assert torch.allclose(folded(crops), expected, atol=1e-5)
    assert model.training and not folded.training
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in folded.modules())
