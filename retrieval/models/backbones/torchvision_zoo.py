"""Any torchvision classification model as a crop embedder's trunk (``torchvision:NAME``).

NAME is built as torchvision builds it for its DEFAULT weights (their number of classes; GoogLeNet's and
Inception's input transform, without the auxiliary heads; ViT's and MaxViT's input side), so that a state_dict
saved from ``torchvision.models.get_model(NAME, weights="DEFAULT")`` loads into it. The weights go into the
whole classification model, which is then cut before its classifier (``graph_cut.py``): a
``VisionTransformer`` gives its encoder's tokens ``(B, 1 + P, C)``, CLS first; any other model its last
feature map ``(B, C, h, w)``. The crop side, mean and std are those of the DEFAULT weights' transforms.
"""

from __future__ import annotations

import dataclasses
import re

import torchvision
from torchvision.models import VisionTransformer, WeightsEnum, get_model, get_model_weights, list_models

from ...errors import SettingsError
from ..crop_embedder import IMAGENET_MEAN, IMAGENET_STD, Trunk
from ..model_build import build_with_weights
from ..weights import ReadWeights, read_weights
from .graph_cut import cut_before_head

EXAMPLES = "resnet101, convnext_tiny, vit_b_16"
AUXILIARY_HEADS = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
# torchvision's DenseNet checkpoints name ``norm.1`` what the model calls ``norm1`` (its builder renames them).
OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def classification_models() -> list[str]:
    """The names ``torchvision:NAME`` takes: torchvision's image classification models."""
    return list_models(module=torchvision.models)


def build_torchvision_trunk(name: str, weights: str) -> Trunk:
    """The trunk of torchvision's ``name`` with ``weights`` (``default``, a state_dict path or ``random``)."""
    if name not in classification_models():
        raise SettingsError(
            f"unknown torchvision model {name!r}: see torchvision.models.list_models(), e.g. {EXAMPLES}"
        )
    default = get_model_weights(name).DEFAULT
    read = read_weights(weights, default, "embedder")  # a missing file or download is refused before building
    arguments = builder_arguments(name, default)
    model, identity = build_with_weights(
        lambda: get_model(name, weights=None, **arguments), adapt_state(name, read), f"torchvision-{name}"
    )
    side, mean, std = input_of(default)
    if isinstance(model, VisionTransformer):
        module, shape = cut_before_head(model.eval(), side, "tokens")
        return Trunk(module, "tokens", shape[2], identity, side, mean, std, patch_size=model.patch_size)
    module, shape = cut_before_head(model.eval(), side, "map")
    return Trunk(module, "map", shape[1], identity, side, mean, std)


def builder_arguments(name: str, default: WeightsEnum) -> dict:
    """The arguments torchvision's builder of ``name`` sets when it loads ``default``: that architecture."""
    arguments = {"num_classes": len(default.meta["categories"])}
    if name in AUXILIARY_HEADS:
        arguments |= {"transform_input": True, "aux_logits": False, "init_weights": False}
    elif name.startswith("vit_"):
        arguments["image_size"] = default.meta["min_size"][0]
    elif name.startswith("maxvit_"):
        arguments["input_size"] = default.meta["min_size"]
    return arguments


def adapt_state(name: str, read: ReadWeights) -> ReadWeights:
    """``read`` with what torchvision's builders change before loading: the auxiliary heads' tensors dropped
    (the trunk never uses them), old DenseNet key names renamed."""
    if read.state is None:
        return read
    state = {key: value for key, value in read.state.items() if not key.startswith(AUXILIARY_HEADS.get(name, ()))}
    if name.startswith("densenet"):
        state = {OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
    return dataclasses.replace(read, state=state)


def input_of(default: WeightsEnum) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """``(crop side, mean, std)`` of ``default``'s preprocessing (224 and ImageNet's where it gives none)."""
    transforms = default.transforms()
    side = list(getattr(transforms, "crop_size", [224]))[0]
    mean, std = getattr(transforms, "mean", IMAGENET_MEAN), getattr(transforms, "std", IMAGENET_STD)
    return int(side), tuple(mean), tuple(std)
