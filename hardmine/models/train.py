"""Training a window classifier for a fixed number of steps on class-balanced batches.

Two ways to feed windows, one loop. `TrainingSet` holds windows already cut out as uint8 crops
(for `WindowNet`, whose score depends only on the crop). `RoITrainingSet` holds windows as boxes in
images the caller loads on demand; each step draws a few images and windows in them (Fast R-CNN
style; required for `RoIWindowNet`, whose score depends on the image around the window).
"""

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hardmine.models.crops import channels_first, check_boxes, crop_windows, standardize
from hardmine.models.device import DEVICE_NAMES, resolve_device
from hardmine.models.errors import ModelError
from hardmine.models.losses import LossConfig, window_loss
from hardmine.models.network import RoIWindowNet, WindowNet

log = logging.getLogger(__name__)

Progress = Callable[[int, float], None]  # called after each step with (step, loss)
ImageLoader = Callable[[int], "np.ndarray | torch.Tensor"]  # image id -> uint8 RGB image


@dataclass(frozen=True)
class TrainConfig:
    """How one round trains its window classifier."""

    # Optimizer steps per round. Fixed, not epochs, so every mining strategy gets the same
    # schedule whatever its pool size.
    steps: int = 400
    # Windows drawn per step (all get a forward pass; OHEM backpropagates a subset).
    batch_size: int = 64
    # Share of each batch drawn from positives, 0-1 exclusive: 0.25 is 1 positive to 3
    # negatives. Positives are drawn with replacement when there are too few.
    positive_fraction: float = 0.25
    # AdamW peak learning rate; it decays to 0 along a cosine over `steps`.
    lr: float = 1e-3
    # AdamW decoupled weight decay: each step shrinks every weight by lr * weight_decay.
    weight_decay: float = 1e-4
    # Mirror each crop (image-centric: each image with its windows) left-right with
    # probability 0.5.
    flip: bool = True
    # Image-centric training only: images drawn per step, >= 2 (one holding a drawn positive,
    # the others holding drawn negatives); more images cost more trunk passes per step.
    images_per_step: int = 2
    # Seeds batch drawing and flips: same seed and same initial weights give bitwise identical
    # weights on the CPU (not promised on CUDA).
    seed: int = 0
    # cpu | cuda | cuda:N | auto (a GPU when there is one).
    device: str = "auto"
    # Mixed precision (float16 autocast, scaled gradients) on CUDA; ignored on the CPU.
    amp: bool = True
    # Which loss, and its knobs.
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        _check_int(self.steps, "steps", 1)
        _check_int(self.batch_size, "batch_size", 2)
        _check_int(self.images_per_step, "images_per_step", 2)
        positives = round(self.batch_size * self.positive_fraction)
        if not 1 <= positives <= self.batch_size - 1:
            raise ModelError(
                f"positive_fraction={self.positive_fraction} gives {positives} positives in a "
                f"batch of {self.batch_size}; choose a fraction leaving at least one positive "
                "and one negative"
            )

        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ModelError(
                f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )
        if self.device not in DEVICE_NAMES and not self.device.startswith("cuda:"):
            raise ModelError(f"unknown device {self.device!r}; choose one of {list(DEVICE_NAMES)}")
        if not isinstance(self.loss, LossConfig):
            raise ModelError(f"loss must be a LossConfig, got {type(self.loss).__name__}")
        if self.loss.ohem_keep is not None and self.loss.ohem_keep > self.batch_size:
            raise ModelError(
                f"ohem_keep={self.loss.ohem_keep} exceeds batch_size={self.batch_size}; "
                "OHEM keeps a subset of each batch"
            )

    @property
    def positives_per_batch(self) -> int:
        return round(self.batch_size * self.positive_fraction)

    @property
    def ohem_keep(self) -> int:
        """Windows per batch that get gradient under OHEM."""
        return self.loss.ohem_keep or max(1, self.batch_size // 4)


@dataclass(frozen=True)
class TrainReport:
    """What one call of `train` did."""

    steps: int
    examples_seen: int  # windows that had a forward pass: steps * batch_size
    final_loss: float  # loss of the last step
    mean_loss: float  # mean of the step losses
    elapsed_s: float
    examples_per_s: float  # windows per second through forward and backward


class BalancedSampler:
    """Draws batch indices with a fixed number of positives and negatives."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels
        self.positives = (labels == 1).nonzero().squeeze(1)
        self.negatives = (labels == 0).nonzero().squeeze(1)
        if len(self.positives) == 0 or len(self.negatives) == 0:
            raise ModelError(
                f"the training set holds {len(self.positives)} positives and "
                f"{len(self.negatives)} negatives; training needs at least one of each"
            )

    def draw(
        self,
        positives: int,
        negatives: int,
        generator: torch.Generator,
        within: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Indices of `positives` positives then `negatives` negatives.

        Each class is drawn without replacement when it has enough members, else with.

        Args:
            positives: how many positives.
            negatives: how many negatives.
            generator: the CPU random generator.
            within: optional (N,) bool mask restricting the draw; it must hold both classes.
        """
        objects, background = self.positives, self.negatives
        if within is not None:
            objects, background = objects[within[objects]], background[within[background]]
        return torch.cat(
            [_pick(objects, positives, generator), _pick(background, negatives, generator)]
        )


@dataclass(frozen=True)
class TrainingSet:
    """Windows cut out as crops (the `WindowNet` path); build it with `build_crops`.

    Attributes:
        crops: (N, 3, 64, 64) uint8, unnormalized: 12 KB per window.
        labels: (N,) int64, 1 object, 0 background.
        boxes: (N, 4) xyxy float32, pixels in the window's image (for OHEM's NMS).
        image_ids: (N,) int64, the window's image.
    """

    crops: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    image_ids: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.crops)
        if self.crops.dtype != torch.uint8 or tuple(self.crops.shape[1:]) != (3, 64, 64):
            raise ModelError(
                f"expected crops uint8 (N, 3, 64, 64), got {self.crops.dtype} "
                f"{tuple(self.crops.shape)}; build the set with build_crops()"
            )
        _check_examples(self.labels, self.boxes, self.image_ids, n)

    def __len__(self) -> int:
        return len(self.crops)

    def draw(
        self, sampler: BalancedSampler, config: TrainConfig, generator: torch.Generator
    ) -> torch.Tensor:
        """Batch indices, drawn from the whole set."""
        positives = config.positives_per_batch
        return sampler.draw(positives, config.batch_size - positives, generator)

    def logits(
        self,
        model: WindowNet | RoIWindowNet,
        indices: torch.Tensor,
        flip: bool,
        generator: torch.Generator,
        device: torch.device,
    ) -> torch.Tensor:
        """Logits, (B,), of the windows at `indices`, in that order."""
        if not isinstance(model, WindowNet):
            raise ModelError(
                f"{type(model).__name__} scores a window in the context of its whole image; "
                "train it with a RoITrainingSet, not with cut-out crops"
            )
        crops = self.crops[indices]
        if flip:
            mirrored = torch.rand(len(crops), generator=generator) < 0.5
            crops = torch.where(mirrored[:, None, None, None], crops.flip(-1), crops)
        return model(standardize(crops.to(device)))


@dataclass(frozen=True)
class RoITrainingSet:
    """Windows as boxes in images loaded on demand (image-centric, Fast R-CNN style).

    Attributes:
        load_image: image id -> uint8 RGB image (3, H, W) or (H, W, 3); called for each image
            a step draws, so cache decoded images on the caller's side if decoding is slow.
        image_ids: (N,) int64, the window's image.
        boxes: (N, 4) xyxy float32, pixels.
        labels: (N,) int64, 1 object, 0 background.
    """

    load_image: ImageLoader
    image_ids: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        _check_examples(self.labels, self.boxes, self.image_ids, len(self.labels))
        if not callable(self.load_image):
            raise ModelError("load_image must be a callable taking an image id")

    def __len__(self) -> int:
        return len(self.labels)

    def draw(
        self, sampler: BalancedSampler, config: TrainConfig, generator: torch.Generator
    ) -> torch.Tensor:
        """Batch indices from a few images: one holding a random positive, the rest negatives."""
        seeds = torch.cat(
            [
                _pick(sampler.positives, 1, generator),
                _pick(sampler.negatives, config.images_per_step - 1, generator),
            ]
        )
        within = torch.isin(self.image_ids, self.image_ids[seeds])

        positives = config.positives_per_batch
        return sampler.draw(positives, config.batch_size - positives, generator, within)

    def logits(
        self,
        model: WindowNet | RoIWindowNet,
        indices: torch.Tensor,
        flip: bool,
        generator: torch.Generator,
        device: torch.device,
    ) -> torch.Tensor:
        """Logits, (B,), of the windows at `indices`, in that order."""
        ids = self.image_ids[indices]
        images, boxes, order = [], [], []
        for image_id in ids.unique().tolist():
            members = (ids == image_id).nonzero().squeeze(1)
            image = standardize(channels_first(self.load_image(image_id)).to(device))
            image_boxes = self.boxes[indices[members]]
            if flip and bool(torch.rand(1, generator=generator) < 0.5):
                image, image_boxes = _mirror(image, image_boxes)
            images.append(image)
            boxes.append(image_boxes)
            order.append(members)

        logits = model.window_logits(images, boxes)
        return logits[torch.argsort(torch.cat(order)).to(logits.device)]


def build_crops(
    examples: Iterable[tuple[np.ndarray | torch.Tensor, torch.Tensor, torch.Tensor, int]],
) -> TrainingSet:
    """Cuts every window out of its image once, keeping the crops as uint8.

    Args:
        examples: per image, (image uint8 (3, H, W) or (H, W, 3), boxes (k, 4) xyxy pixels,
            labels (k,) 1 object / 0 background, image id).

    Returns:
        The training set, windows in the order given.
    """
    crops, labels, boxes, image_ids = [], [], [], []
    for image, image_boxes, image_labels, image_id in examples:
        image_boxes = check_boxes(image_boxes, f"boxes of image {image_id}")
        image_labels = torch.as_tensor(image_labels, dtype=torch.int64)
        if len(image_labels) != len(image_boxes):
            raise ModelError(
                f"image {image_id}: {len(image_boxes)} boxes but {len(image_labels)} labels"
            )

        # Cropping commutes with the per-channel normalization (inside the image), so crops of
        # raw pixels, rounded to uint8, are the normalized crops to within 0.5 / 255.
        pixels = crop_windows(channels_first(image).float(), image_boxes)
        crops.append(pixels.round().clamp(0, 255).to(torch.uint8))
        labels.append(image_labels)
        boxes.append(image_boxes)
        image_ids.append(torch.full((len(image_boxes),), int(image_id), dtype=torch.int64))

    if not crops:
        empty = torch.zeros(0, dtype=torch.int64)
        return TrainingSet(
            torch.zeros(0, 3, 64, 64, dtype=torch.uint8), empty, torch.zeros(0, 4), empty
        )
    return TrainingSet(torch.cat(crops), torch.cat(labels), torch.cat(boxes), torch.cat(image_ids))


def train(
    model: WindowNet | RoIWindowNet,
    training_set: TrainingSet | RoITrainingSet,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> TrainReport:
    """Trains `model` in place for `config.steps` steps.

    Every batch holds `config.positives_per_batch` positives, so the class imbalance of the
    pool is handled by the sampler, not by the loss. Focal loss first sets the final bias to
    the configured prior; OHEM backpropagates only the hardest windows of each batch.

    Args:
        model: a network from `build_model`; it is moved to the configured device.
        training_set: crops (`TrainingSet`, WindowNet only) or image-centric (`RoITrainingSet`).
        config: the schedule, sampling, loss and device; defaults to `TrainConfig()`.
        progress: optional callback, called after each step with (step, loss).

    Returns:
        What the run did: steps, windows seen, losses, speed.
    """
    config = config or TrainConfig()
    device = resolve_device(config.device)
    sampler = BalancedSampler(training_set.labels)
    generator = torch.Generator().manual_seed(config.seed)
    amp = config.amp and device.type == "cuda"

    model.to(device).train()
    if config.loss.name == "focal" and config.loss.focal_prior is not None:
        model.init_prior(config.loss.focal_prior)
    optimizer = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    context = {"backbone": model.backbone, "loss": config.loss.name, "device": device, "amp": amp}
    counts = {"windows": len(training_set), "positives": len(sampler.positives)}
    log.info("training started %s", _key_values(**context, **counts, steps=config.steps))
    started = time.perf_counter()
    losses = []
    for step in range(1, config.steps + 1):
        indices = training_set.draw(sampler, config, generator)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = training_set.logits(model, indices, config.flip, generator, device)
        labels, boxes, image_ids = (
            values[indices].to(device)
            for values in (training_set.labels, training_set.boxes, training_set.image_ids)
        )
        loss = window_loss(logits.float(), labels, boxes, image_ids, config.loss, config.ohem_keep)

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()

        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])

    elapsed_s = time.perf_counter() - started
    report = TrainReport(
        steps=config.steps,
        examples_seen=config.steps * config.batch_size,
        final_loss=losses[-1],
        mean_loss=math.fsum(losses) / len(losses),
        elapsed_s=round(elapsed_s, 3),
        examples_per_s=round(config.steps * config.batch_size / elapsed_s, 1),
    )
    log.info("training finished %s", _key_values(**asdict(report)))
    return report


def _key_values(**values: object) -> str:
    """key=value pairs for one log line; floats to 4 significant digits."""
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _pick(indices: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n of `indices`, without replacement when there are enough."""
    if len(indices) >= n:
        return indices[torch.randperm(len(indices), generator=generator)[:n]]
    return indices[torch.randint(len(indices), (n,), generator=generator)]


def _mirror(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-right mirror of an image (3, H, W) and its xyxy boxes (x2 exclusive)."""
    width = image.shape[-1]
    mirrored = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    return image.flip(-1), mirrored


def _check_examples(
    labels: torch.Tensor, boxes: torch.Tensor, image_ids: torch.Tensor, n: int
) -> None:
    given = {"labels": labels, "boxes": boxes, "image_ids": image_ids}
    for name, value in given.items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"{name} must be a torch tensor, got {type(value).__name__}")

    shapes = (tuple(labels.shape), tuple(boxes.shape), tuple(image_ids.shape))
    if shapes != ((n,), (n, 4), (n,)):
        raise ModelError(
            f"expected labels (N,), boxes (N, 4), image_ids (N,) with N={n}, got {shapes}"
        )
    if ((labels != 0) & (labels != 1)).any():
        raise ModelError(
            f"labels must be 1 (object) or 0 (background), got {labels.unique().tolist()}"
        )
    check_boxes(boxes)


def _check_int(value: int, name: str, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ModelError(f"{name} must be an integer >= {minimum}, got {value!r}")
