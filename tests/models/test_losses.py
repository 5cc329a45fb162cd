import pytest
import torch
import torch.nn.functional as F
import torchvision

from hardmine.models import LossConfig, ModelError, ohem_select, sigmoid_focal_loss, window_loss


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_loss_equals_torchvision(alpha: float, gamma: float, reduction: str) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, generator=generator) * 4
    targets = (torch.rand(200, generator=generator) < 0.3).float()
    ours = sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_sigmoid_focal_loss_alpha_none_equals_torchvision_negative_alpha() -> None:
    logits, targets = torch.randn(50), (torch.rand(50) < 0.5).float()
    ours = sigmoid_focal_loss(logits, targets, None, 2.0)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, targets, -1, 2.0)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_sigmoid_focal_loss_gamma_zero_no_alpha_equals_bce() -> None:
    logits, targets = torch.randn(100) * 3, (torch.rand(100) < 0.5).float()
    focal = sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0, reduction="mean")
    assert torch.allclose(focal, F.binary_cross_entropy_with_logits(logits, targets))


def test_sigmoid_focal_loss_unknown_reduction_raises() -> None:
    with pytest.raises(ModelError, match=r"unknown reduction 'avg'.*\['none', 'mean', 'sum'\]"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="avg")


def test_ohem_select_drops_same_image_duplicates_and_keeps_hardest() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 0: image 0, loss 5
            [1.0, 0.0, 11.0, 10.0],  # 1: image 0, IoU 90/110 = 0.82 with 0: suppressed
            [20.0, 20.0, 30.0, 30.0],  # 2: image 0, disjoint
            [0.0, 0.0, 10.0, 10.0],  # 3: image 1, same box as 0 but another image: kept
            [50.0, 50.0, 60.0, 60.0],  # 4: image 1, the easiest
        ]
    )
    losses = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    image_ids = torch.tensor([0, 0, 0, 1, 1])
    # 4 survivors of NMS, hardest first; keep=3 drops the easiest.
    assert ohem_select(losses, boxes, image_ids, keep=10).tolist() == [0, 2, 3, 4]
    assert ohem_select(losses, boxes, image_ids, keep=3).tolist() == [0, 2, 3]


def test_ohem_select_higher_iou_threshold_keeps_the_near_duplicate() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    kept = ohem_select(torch.tensor([1.0, 2.0]), boxes, torch.tensor([0, 0]), 5, nms_iou=0.9)
    assert kept.tolist() == [1, 0]


def test_ohem_select_empty_batch_returns_no_indices() -> None:
    kept = ohem_select(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 4)
    assert kept.shape == (0,)


def test_ohem_select_mismatched_shapes_raise() -> None:
    with pytest.raises(ModelError, match=r"losses \(N,\), boxes \(N, 4\)"):
        ohem_select(torch.zeros(3), torch.zeros(2, 4), torch.zeros(3, dtype=torch.int64), 1)


def test_window_loss_ohem_gives_gradient_only_to_kept_windows() -> None:
    logits = torch.tensor([3.0, -3.0, 0.0, 2.0], requires_grad=True)
    labels = torch.tensor([0, 1, 1, 1])  # losses: high, high, medium, low
    boxes = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    loss = window_loss(
        logits, labels, boxes.float(), torch.zeros(4, dtype=torch.int64), LossConfig("ohem"), 2
    )
    loss.backward()
    assert (logits.grad != 0).tolist() == [True, True, False, False]


def test_window_loss_focal_is_normalized_by_positives() -> None:
    logits, labels = torch.randn(8), torch.tensor([1, 1, 0, 0, 0, 0, 0, 0])
    loss = window_loss(logits, labels, torch.zeros(8, 4), torch.zeros(8), LossConfig("focal"), 2)
    expected = torchvision.ops.sigmoid_focal_loss(logits, labels.float(), reduction="sum") / 2
    assert torch.allclose(loss, expected)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "bce"}, r"unknown loss 'bce'; choose one of \['ce', 'focal', 'ohem'\]"),
        ({"focal_alpha": 1.5}, r"focal_alpha must be in \[0, 1\] or None, got 1.5"),
        ({"focal_gamma": -1.0}, "focal_gamma must be >= 0"),
        ({"focal_prior": 0.0}, r"focal_prior must be in \(0, 1\)"),
        ({"ohem_keep": 0}, "ohem_keep must be a positive integer"),
        ({"ohem_nms_iou": 0.0}, r"ohem_nms_iou must be in \(0, 1\]"),
    ],
)
def test_loss_config_bad_field_raises(fields: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        LossConfig(**fields)
