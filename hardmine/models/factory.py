"""Building a network by backbone name, with optional local weights."""

from pathlib import Path

from hardmine.models.checkpoint import read_state_dict
from hardmine.models.errors import ModelError
from hardmine.models.network import RoIWindowNet, WindowNet, backbone_class


def build_model(
    backbone: str = "windownet", weights: str | Path | None = None
) -> WindowNet | RoIWindowNet:
    """A fresh window classifier.

    Args:
        backbone: "windownet" (small fully convolutional net, dense scoring) or "resnet18"
            (torchvision trunk with an RoI head).
        weights: optional local file. For resnet18 a torchvision resnet18 state dict (the trunk
            keys are loaded, layer4 and fc ignored); for windownet a WindowNet state dict.
            Nothing is ever downloaded.

    Returns:
        The model, in training mode, on the CPU.
    """
    model = backbone_class(backbone)()
    if weights is None:
        return model

    state = read_state_dict(weights)
    if isinstance(model, RoIWindowNet):
        model.load_trunk(state, str(weights))
        return model
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{weights} is not a windownet state dict: {error}") from None
    return model
