"""Window classifiers: networks, scoring, losses, training and checkpoints.

Knows nothing of SQL or Prefect: callers hand in images, boxes and labels as tensors.
"""

from hardmine.models.checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from hardmine.models.crops import (
    CROP_SIZE_PX,
    STRIDE_PX,
    crop_windows,
    normalize,
    sampling_ratio,
    standardize,
)
from hardmine.models.device import resolve_device
from hardmine.models.errors import ModelError
from hardmine.models.factory import build_model
from hardmine.models.losses import LossConfig, ohem_select, sigmoid_focal_loss, window_loss
from hardmine.models.network import BACKBONES, RoIWindowNet, WindowNet
from hardmine.models.scoring import (
    DENSE_TOLERANCE,
    WindowScorer,
    crop_scores,
    dense_scores,
    grid_windows,
    roi_grid_scores,
    roi_scores,
)
from hardmine.models.train import (
    RoITrainingSet,
    TrainConfig,
    TrainingSet,
    TrainReport,
    build_crops,
    train,
)

__all__ = [
    "BACKBONES",
    "CROP_SIZE_PX",
    "DENSE_TOLERANCE",
    "STRIDE_PX",
    "LossConfig",
    "ModelError",
    "RoITrainingSet",
    "RoIWindowNet",
    "TrainConfig",
    "TrainReport",
    "TrainingSet",
    "WindowNet",
    "WindowScorer",
    "build_crops",
    "build_model",
    "crop_scores",
    "crop_windows",
    "dense_scores",
    "grid_windows",
    "load_checkpoint",
    "normalize",
    "ohem_select",
    "read_state_dict",
    "resolve_device",
    "roi_grid_scores",
    "roi_scores",
    "sampling_ratio",
    "save_checkpoint",
    "sigmoid_focal_loss",
    "standardize",
    "train",
    "window_loss",
]
