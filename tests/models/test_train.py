import pytest
import torch

from hardmine.models import (
    LossConfig,
    ModelError,
    RoITrainingSet,
    RoIWindowNet,
    TrainConfig,
    TrainingSet,
    WindowNet,
    build_crops,
    crop_windows,
    standardize,
    train,
)
from hardmine.models.train import BalancedSampler, _mirror

FULL_CROP = [0.0, 0.0, 64.0, 64.0]


def brightness_set(positives: int, negatives: int, seed: int) -> TrainingSet:
    """Bright crops are objects, dark crops background: trivially separable."""
    generator = torch.Generator().manual_seed(seed)
    bright = torch.randint(120, 256, (positives, 3, 64, 64), dtype=torch.uint8, generator=generator)
    dark = torch.randint(0, 136, (negatives, 3, 64, 64), dtype=torch.uint8, generator=generator)
    n = positives + negatives
    labels = torch.tensor([1] * positives + [0] * negatives)
    return TrainingSet(
        torch.cat([bright, dark]), labels, torch.tensor([FULL_CROP] * n), torch.arange(n)
    )


def trained_weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = WindowNet()
    train(
        model,
        brightness_set(6, 14, seed=0),
        TrainConfig(steps=20, batch_size=8, device="cpu", seed=seed),
    )
    return model.state_dict()


def test_train_same_seed_twice_gives_identical_weights() -> None:
    first, second, other_seed = trained_weights(0), trained_weights(0), trained_weights(1)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other_seed[key]) for key in first)


@pytest.mark.parametrize("loss", ["ce", "focal", "ohem"])
def test_train_separable_crops_reaches_high_accuracy(loss: str) -> None:
    torch.manual_seed(0)
    model = WindowNet()
    config = TrainConfig(steps=25, batch_size=16, device="cpu", loss=LossConfig(loss))
    report = train(model, brightness_set(20, 60, seed=0), config)

    held_out = brightness_set(50, 50, seed=1)
    with torch.no_grad():
        predicted = model.eval()(standardize(held_out.crops)).sigmoid() > 0.5
    accuracy = (predicted == held_out.labels.bool()).float().mean().item()
    assert accuracy > 0.9
    assert report.steps == 25 and report.examples_seen == 400
    assert report.final_loss < report.mean_loss


def test_train_calls_progress_after_every_step() -> None:
    calls = []
    config = TrainConfig(steps=3, batch_size=4, device="cpu")
    train(WindowNet(), brightness_set(2, 2, seed=0), config, lambda step, loss: calls.append(step))
    assert calls == [1, 2, 3]


def test_train_without_positives_raises() -> None:
    with pytest.raises(
        ModelError, match="0 positives and 5 negatives; training needs at least one"
    ):
        train(WindowNet(), brightness_set(0, 5, seed=0), TrainConfig(steps=1, device="cpu"))


def test_train_roiwindownet_on_crops_raises() -> None:
    with pytest.raises(ModelError, match="RoIWindowNet.*train it with a RoITrainingSet"):
        train(RoIWindowNet(), brightness_set(2, 2, seed=0), TrainConfig(steps=1, device="cpu"))


def test_balanced_sampler_few_positives_draws_them_with_replacement() -> None:
    sampler = BalancedSampler(torch.tensor([0, 1, 0, 0, 0, 0]))
    indices = sampler.draw(4, 3, torch.Generator().manual_seed(0))
    assert indices[:4].tolist() == [1, 1, 1, 1]
    assert len(set(indices[4:].tolist())) == 3  # enough negatives: no repeats


def image_centric_set(loaded: list[int]) -> RoITrainingSet:
    """Four 96x128 images; image 0 holds the only object, images 1-3 only background."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 96, 128), dtype=torch.uint8, generator=generator)

    def load_image(image_id: int) -> torch.Tensor:
        loaded.append(image_id)
        return images[image_id].permute(1, 2, 0).numpy()  # channels last, as decoders give

    image_ids = torch.tensor([0, 0, 1, 1, 2, 3])
    boxes = torch.tensor(
        [
            [10, 10, 74, 74],
            [50, 20, 100, 90],
            [0, 0, 64, 64],
            [60, 30, 128, 96],
            [5, 5, 40, 60],
            [0, 0, 32, 32],
        ]
    )
    labels = torch.tensor([1, 0, 0, 0, 0, 0])
    return RoITrainingSet(load_image, image_ids, boxes.float(), labels)


def test_roi_training_set_draw_stays_within_images_per_step() -> None:
    training_set = image_centric_set([])
    config = TrainConfig(batch_size=8, images_per_step=2)
    sampler = BalancedSampler(training_set.labels)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        indices = training_set.draw(sampler, config, generator)
        assert len(training_set.image_ids[indices].unique()) <= 2
        assert training_set.labels[indices].tolist() == [1, 1] + [0] * 6  # 0.25 of 8 positives


@pytest.mark.parametrize("model_class", [RoIWindowNet, WindowNet])
def test_train_image_centric_loads_only_drawn_images(model_class: type) -> None:
    loaded: list[int] = []
    config = TrainConfig(steps=2, batch_size=8, device="cpu", loss=LossConfig("focal"))
    report = train(model_class(), image_centric_set(loaded), config)
    assert torch.isfinite(torch.tensor(report.final_loss))
    assert 2 * 1 <= len(loaded) <= 2 * 2  # each step: image 0 plus at most one other
    assert loaded.count(0) == 2


def test_mirror_crop_of_mirrored_box_is_flipped_crop() -> None:
    image, box = torch.rand(3, 40, 90), torch.tensor([[7.0, 3.0, 50.0, 33.0]])
    mirrored_image, mirrored_box = _mirror(image, box)
    assert mirrored_box.tolist() == [[40.0, 3.0, 83.0, 33.0]]
    expected = crop_windows(image, box).flip(-1)
    assert torch.allclose(crop_windows(mirrored_image, mirrored_box), expected, atol=1e-5)


def test_build_crops_cuts_uint8_crops_and_skips_images_without_windows() -> None:
    image = torch.randint(0, 256, (80, 100, 3), dtype=torch.uint8)  # channels last
    examples = [
        (image, torch.tensor([[10, 5, 74, 69], [0, 0, 100, 80]]), torch.tensor([1, 0]), 7),
        (image, torch.zeros(0, 4), torch.zeros(0), 8),  # an image with no windows
    ]
    training_set = build_crops(examples)
    assert training_set.crops.shape == (2, 3, 64, 64)
    assert training_set.crops.dtype == torch.uint8
    assert torch.equal(training_set.crops[0], image.permute(2, 0, 1)[:, 5:69, 10:74])
    assert training_set.image_ids.tolist() == [7, 7]
    assert training_set.labels.tolist() == [1, 0]


def test_build_crops_labels_count_differs_from_boxes_raises() -> None:
    image = torch.zeros(3, 10, 10, dtype=torch.uint8)
    with pytest.raises(ModelError, match="image 3: 1 boxes but 2 labels"):
        build_crops([(image, torch.tensor([[0, 0, 5, 5]]), torch.tensor([1, 0]), 3)])


def test_build_crops_no_images_gives_empty_set() -> None:
    assert len(build_crops([])) == 0


def test_training_set_labels_not_binary_raise() -> None:
    with pytest.raises(
        ModelError, match=r"labels must be 1 \(object\) or 0 \(background\), got \[0, 2\]"
    ):
        TrainingSet(
            torch.zeros(2, 3, 64, 64, dtype=torch.uint8),
            torch.tensor([0, 2]),
            torch.zeros(2, 4),
            torch.zeros(2),
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"batch_size": 1}, "batch_size must be an integer >= 2"),
        ({"positive_fraction": 0.0}, "gives 0 positives in a batch of 64"),
        ({"positive_fraction": 1.0}, "gives 64 positives"),
        ({"lr": 0.0}, "need lr > 0"),
        ({"images_per_step": 1}, "images_per_step must be an integer >= 2"),
        ({"device": "tpu"}, r"unknown device 'tpu'"),
        ({"loss": "focal"}, "loss must be a LossConfig, got str"),
        ({"loss": LossConfig("ohem", ohem_keep=65)}, "ohem_keep=65 exceeds batch_size=64"),
    ],
)
def test_train_config_bad_field_raises(fields: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        TrainConfig(**fields)


def test_train_config_ohem_keep_defaults_to_quarter_batch() -> None:
    assert TrainConfig(batch_size=64).ohem_keep == 16
    assert TrainConfig(batch_size=64, loss=LossConfig("ohem", ohem_keep=5)).ohem_keep == 5


def test_roi_training_set_labels_as_list_raise() -> None:
    with pytest.raises(ModelError, match="labels must be a torch tensor, got list"):
        RoITrainingSet(lambda image_id: None, torch.zeros(1), torch.ones(1, 4), [1])
