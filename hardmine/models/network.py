"""Window classifiers: a small fully convolutional net, and a resnet18 trunk with an RoI head.

Both answer the same two questions through `score_windows` and `score_grid` (see
`hardmine.models.scoring.WindowScorer`), so a miner never needs to know which one it holds.
"""

import logging
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from copy import deepcopy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import resnet18
from torchvision.ops import roi_align

from hardmine.models import scoring
from hardmine.models.crops import CROP_SIZE_PX, STRIDE_PX, check_boxes, crop_windows
from hardmine.models.errors import ModelError

log = logging.getLogger(__name__)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _set_prior(bias: torch.Tensor, pi: float) -> None:
    if not 0 < pi < 1:
        raise ModelError(f"expected a prior probability strictly between 0 and 1, got {pi}")
    with torch.no_grad():
        bias.fill_(-math.log((1 - pi) / pi))


class WindowNet(nn.Module):
    """A 64x64 crop classifier built only from valid convolutions and even-aligned pooling.

    Each 3x3 convolution shrinks its input by 2 and each 2x2 max pool halves it; a 64x64 crop
    ends as one logit (about 20 MFLOP). Run over a larger image, output (i, j) sees exactly the
    64x64 patch at (16i, 16j), so dense and per-crop scores agree in eval mode (BatchNorm is then
    an affine map).
    """

    backbone = "windownet"

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(3, 16),  # 64 -> 62
            nn.MaxPool2d(2),  # 31
            *_conv_bn_relu(16, 32),  # 29
            nn.MaxPool2d(2),  # 14 (the last row and column fall out of every 64x64 patch)
            *_conv_bn_relu(32, 64),  # 12
            nn.MaxPool2d(2),  # 6
            *_conv_bn_relu(64, 128),  # 4
            nn.MaxPool2d(2),  # 2
            nn.Conv2d(128, 128, 2),  # 1
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(128, 1, 1)

        # channels_last: measured 2.5-3.6x faster on the 2-core CPU (batched crops and dense).
        self.to(memory_format=torch.channels_last)

    def init_prior(self, pi: float = 0.01) -> None:
        """Sets the final bias so every window starts at probability `pi` (Lin et al. 2017)."""
        _set_prior(self.classifier.bias, pi)

    def folded(self) -> "WindowNet":
        """An eval-mode copy with each BatchNorm folded into the convolution before it.

        Same logits to float rounding, two fewer passes over each activation: measured 1.3-1.4x
        faster dense scoring on the 2-core CPU. Scoring uses it; training never does.
        """
        net = deepcopy(self).eval().requires_grad_(False)
        for index, layer in enumerate(net.features):
            if isinstance(layer, nn.BatchNorm2d):
                net.features[index - 1] = fuse_conv_bn_eval(net.features[index - 1], layer)
                net.features[index] = nn.Identity()
        return net.to(memory_format=torch.channels_last)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Classifies crops.

        Args:
            crops: (N, 3, 64, 64) float, normalized (see `crops.standardize`).

        Returns:
            (N,) logits.
        """
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, CROP_SIZE_PX, CROP_SIZE_PX):
            raise ModelError(
                f"expected crops shaped (N, 3, {CROP_SIZE_PX}, {CROP_SIZE_PX}), got "
                f"{tuple(crops.shape)}; cut windows with crop_windows() first"
            )
        return self._logit_map(crops).flatten()

    def dense(self, levels: torch.Tensor) -> torch.Tensor:
        """Classifies every 64x64 patch at stride 16 of each input, in one pass.

        Args:
            levels: (B, 3, h, w) float, normalized, h and w at least 64.

        Returns:
            (B, (h - 64) // 16 + 1, (w - 64) // 16 + 1) logits; entry (i, j) is the logit of the
            patch with top-left corner (16j, 16i). Outputs past the last whole patch, which the
            network computes from a truncated field of view, are dropped.
        """
        if levels.ndim != 4 or levels.shape[1] != 3 or min(levels.shape[2:]) < CROP_SIZE_PX:
            raise ModelError(
                f"expected levels shaped (B, 3, h, w) with h, w >= {CROP_SIZE_PX}, got "
                f"{tuple(levels.shape)}"
            )
        rows = (levels.shape[2] - CROP_SIZE_PX) // STRIDE_PX + 1
        cols = (levels.shape[3] - CROP_SIZE_PX) // STRIDE_PX + 1
        return self._logit_map(levels)[:, 0, :rows, :cols]

    def window_logits(
        self, images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Logits of windows in whole images (the image-centric training path).

        Args:
            images: B tensors (3, H_i, W_i), float, normalized.
            boxes: B tensors (K_i, 4) xyxy, pixels.

        Returns:
            (sum K_i,) logits, image by image in the order given.
        """
        crops = [
            crop_windows(image, image_boxes)
            for image, image_boxes in zip(images, boxes, strict=True)
        ]
        return self(torch.cat(crops))

    def score_windows(
        self, image: torch.Tensor, boxes: torch.Tensor, batch_size: int = 64
    ) -> torch.Tensor:
        """Per-window scores; see `scoring.crop_scores`."""
        return scoring.crop_scores(self, image, boxes, batch_size)

    def score_grid(
        self, image: torch.Tensor, window_shapes: Sequence[tuple[float, float]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of every grid window, shared computation; see `scoring.dense_scores`."""
        return scoring.dense_scores(self, image, window_shapes)

    def _logit_map(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))


class RoIWindowNet(nn.Module):
    """resnet18 up to layer3 (stride 16) run once per image, then RoIAlign and a small head.

    Fast R-CNN style, as in OHEM (Shrivastava et al. 2016): torchvision's convolutions are padded,
    so a window's score depends on the image around it and per-crop scoring would not reproduce
    it; scoring one window at a time here means running this same model with a single RoI.
    BatchNorm layers train normally (not frozen), since the trunk may start untrained. The trunk
    sees the whole image: about 0.5 GB of activations for a 2000 x 2000 image.
    """

    backbone = "resnet18"
    roi_size = 4  # RoIAlign output side, feature cells: a 64 px window spans 4 cells
    roi_sampling_ratio = 2  # bilinear samples per output cell and axis

    def __init__(self) -> None:
        super().__init__()
        net = resnet18(weights=None)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
        self.trunk = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in names))
        channels = 256  # layer3's output width
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * self.roi_size**2, 256),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(256, 1)
        self.to(memory_format=torch.channels_last)

    def init_prior(self, pi: float = 0.01) -> None:
        """Sets the final bias so every window starts at probability `pi` (Lin et al. 2017)."""
        _set_prior(self.classifier.bias, pi)

    def load_trunk(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        """Loads the trunk from a torchvision resnet18 state dict (layer4 and fc are unused).

        Args:
            state_dict: torchvision resnet18 keys (`conv1.weight`, `layer1.0.bn1.bias`, ...).
            source: where the weights came from, for messages.
        """
        wanted = self.trunk.state_dict()
        missing = [key for key in wanted if key not in state_dict]
        if missing:
            raise ModelError(
                f"{source} lacks {len(missing)} of the {len(wanted)} resnet18 trunk tensors "
                f"(first: {missing[:3]}); expected a torchvision resnet18 state dict"
            )
        wrong = [k for k in wanted if state_dict[k].shape != wanted[k].shape]
        if wrong:
            key = wrong[0]
            raise ModelError(
                f"{source}: {key} has shape {tuple(state_dict[key].shape)}, resnet18 needs "
                f"{tuple(wanted[key].shape)}; expected a torchvision resnet18 state dict"
            )

        self.trunk.load_state_dict({key: state_dict[key] for key in wanted})
        unused = sorted({key.split(".")[0] for key in state_dict if key not in wanted})
        log.info("weights=%s loaded=%d unused_prefixes=%s", source, len(wanted), unused)

    def forward(
        self, images: torch.Tensor | Sequence[torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Logits of windows in whole images.

        Args:
            images: (B, 3, H, W) float, or B tensors (3, H_i, W_i); normalized.
            boxes: B tensors (K_i, 4) xyxy, pixels.

        Returns:
            (sum K_i,) logits, image by image in the order given.
        """
        if len(images) != len(boxes):
            raise ModelError(
                f"got {len(images)} images but {len(boxes)} box tensors; pass one each"
            )
        if isinstance(images, torch.Tensor):
            features = list(self.features(images))
        else:
            features = [self.features(image[None])[0] for image in images]
        logits = [self.roi_logits(f, check_boxes(b)) for f, b in zip(features, boxes, strict=True)]
        return torch.cat(logits) if logits else torch.zeros(0, device=self.classifier.bias.device)

    window_logits = forward

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Trunk features.

        Args:
            images: (B, 3, H, W) float, normalized.

        Returns:
            (B, 256, ceil(H / 16), ceil(W / 16)).
        """
        return self.trunk(images.contiguous(memory_format=torch.channels_last))

    def roi_logits(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Logits of windows on one image's features.

        Args:
            features: (256, h, w) from `features`.
            boxes: (K, 4) xyxy, image pixels.

        Returns:
            (K,) logits.
        """
        pooled = roi_align(
            features[None],
            [boxes.to(features.device, features.dtype)],
            self.roi_size,
            1 / STRIDE_PX,
            self.roi_sampling_ratio,
            aligned=True,
        )
        return self.classifier(self.head(pooled)).flatten()

    def score_windows(
        self, image: torch.Tensor, boxes: torch.Tensor, batch_size: int = 1024
    ) -> torch.Tensor:
        """Per-window scores, one trunk pass; see `scoring.roi_scores`."""
        return scoring.roi_scores(self, image, boxes, batch_size)

    def score_grid(
        self, image: torch.Tensor, window_shapes: Sequence[tuple[float, float]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of every grid window, one trunk pass; see `scoring.roi_grid_scores`."""
        return scoring.roi_grid_scores(self, image, window_shapes)


BACKBONES: dict[str, type[WindowNet] | type[RoIWindowNet]] = {
    WindowNet.backbone: WindowNet,
    RoIWindowNet.backbone: RoIWindowNet,
}


def backbone_class(backbone: str) -> type[WindowNet] | type[RoIWindowNet]:
    """The network class for a backbone name, with a message listing the known names."""
    if backbone not in BACKBONES:
        raise ModelError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[backbone]
