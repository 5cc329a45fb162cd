"""A run's configuration: one frozen dataclass per concern, stored with the run as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from hardmine.errors import HardmineError
from hardmine.miners.base import MiningConfig
from hardmine.miners.detect import DetectConfig
from hardmine.miners.windows import WindowConfig
from hardmine.models import LossConfig, TrainConfig

RETRAIN_MODES = ("scratch", "finetune")


@dataclass(frozen=True)
class StopConfig:
    """When a run ends before its last round."""

    # Stop when a round's mining yield (admitted per 1,000 windows scored) falls under this;
    # 0 turns the check off.
    min_yield_per_1k: float = 0.0
    # Stop when the held-out metric has not improved for this many rounds; 0 turns it off.
    patience: int = 0
    # The held-out metric watched by `patience`: ap50 or ap (higher is better), lamr or
    # fp_per_image (lower is better).
    metric: str = "ap50"
    # Smallest change that counts as an improvement, in the metric's units.
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.metric not in ("ap50", "ap", "lamr", "fp_per_image"):
            raise HardmineError(
                f"stop metric must be ap50, ap, lamr or fp_per_image, got {self.metric!r}"
            )
        if self.min_yield_per_1k < 0 or self.patience < 0 or self.min_delta < 0:
            raise HardmineError("min_yield_per_1k, patience and min_delta must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a bootstrap run; `hardmine run` flags map onto it."""

    dataset: str
    # Rounds to run: round 0 (positives + random negatives) and rounds 1..N-1 (the pool).
    rounds: int = 3
    # Split whose images are trained on and mined; None: "train" when the dataset has it.
    train_split: str | None = None
    # Held-out split; None: "val" or "test" when the dataset has one, else a seeded
    # `holdout` fraction of the training split's images.
    eval_split: str | None = None
    holdout: float = 0.2
    # Object categories that are positives; empty: all. Other objects are neither positive
    # nor background.
    classes: tuple[str, ...] = ()
    # Random background windows in the round-0 pool, spread over the training images.
    random_negatives: int = 2000
    # Extra jittered copies of each positive in the training crops (shifts and scales of up to
    # 10% of the box), so the detector fires on windows that miss the object's exact frame.
    positive_jitter: int = 4
    # Rounds after 0: "scratch" retrains from the initial weights (every strategy the same
    # schedule), "finetune" starts from the previous round's detector.
    retrain: str = "scratch"
    # windownet (fully convolutional, dense scoring) or resnet18 (torchvision trunk + RoIAlign).
    backbone: str = "windownet"
    # Local weights to start from (a torchvision resnet18 .pth, or a windownet state dict).
    weights: str | None = None
    # Detection threshold at which fp_per_image and recall are read (0-1).
    operating_threshold: float = 0.5
    seed: int = 0
    # Where checkpoints go; None: ./hardmine-checkpoints/<run name>.
    checkpoint_dir: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    stop: StopConfig = field(default_factory=StopConfig)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise HardmineError(f"--rounds must be at least 1, got {self.rounds}")
        if self.retrain not in RETRAIN_MODES:
            raise HardmineError(f"retrain must be one of {RETRAIN_MODES}, got {self.retrain!r}")
        if not 0 < self.holdout < 1 or not 0 < self.operating_threshold < 1:
            raise HardmineError("holdout and operating_threshold must be in (0, 1)")
        if self.random_negatives < 1 or self.positive_jitter < 0:
            raise HardmineError("random_negatives must be >= 1 and positive_jitter >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The config stored with a run (unknown keys are an error: the store is newer)."""
        nested = {
            "train": TrainConfig,
            "mining": MiningConfig,
            "windows": WindowConfig,
            "detect": DetectConfig,
            "stop": StopConfig,
        }
        values = dict(data)
        for key, kind in nested.items():
            if key in values:
                values[key] = _build(kind, values[key])
        return _build(cls, values)


def _build(kind: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise HardmineError(f"{kind.__name__} has no setting {unknown}; is hardmine out of date?")

    converted = {}
    for key, value in values.items():
        if key == "loss" and isinstance(value, dict):
            value = LossConfig(**value)
        elif isinstance(value, list):
            value = tuple(value)
        converted[key] = value
    return kind(**converted)
