"""torchvision's ResNet50 as a crop embedder's trunk: conv1 … layer4, a ``(B, 2048, h, w)`` map."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from ..crop_embedder import CropEmbedder, CropOptions, Trunk
from ..model_build import build_with_weights
from ..weights import read_weights

RESNET50_DIMENSION = 2048


def build_resnet50_trunk(weights: str) -> Trunk:
    """The torchvision ResNet50 with ``weights`` (``default``, a state_dict path or ``random``) loaded, without
    its pooling and classifier."""
    read = read_weights(weights, ResNet50_Weights.DEFAULT, "embedder")
    model, identity = build_with_weights(lambda: resnet50(weights=None), read, "resnet50")
    module = nn.Sequential(*list(model.children())[:-2])
    return Trunk(module, "map", RESNET50_DIMENSION, identity)


class ResNet50Embedder(CropEmbedder):
    """The ``resnet50`` embedder: ResNet50 trunk, 224x224 squashed crops, GAP (or ``options``), 2048-d."""

    def __init__(
        self, weights: str, device: torch.device, precision: str = "auto", options: CropOptions | None = None
    ) -> None:
        super().__init__(build_resnet50_trunk(weights), options or CropOptions(), device, precision)
