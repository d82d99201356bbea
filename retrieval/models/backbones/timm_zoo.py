"""Any timm model as a crop embedder's trunk (``timm:NAME``; timm is an optional extra).

The trunk is the model's ``forward_features``: a ``(B, C, h, w)`` feature map for CNNs (an NHWC map, as
timm's Swin gives, is permuted to NCHW), ``(B, T, C)`` tokens for ViTs (``num_prefix_tokens`` CLS and
register tokens first). The crop side, mean and std are the model's ``pretrained_cfg``'s.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import SettingsError, WeightsError
from ..crop_embedder import IMAGENET_MEAN, IMAGENET_STD, Trunk
from ..weights import apply_weights, read_weights, seeded_init, state_fingerprint
from .zoo import first_line

EXAMPLES = "resnet50, convnext_tiny, vit_small_patch16_224"


class ForwardFeatures(nn.Module):
    """A timm model's ``forward_features``: ``(B, 3, S, S)`` → a map ``(B, C, h, w)`` or tokens ``(B, T, C)``."""

    def __init__(self, model: nn.Module, channels_last_output: bool) -> None:
        super().__init__()
        self.model = model
        self.channels_last_output = channels_last_output  # the model gives ``(B, h, w, C)``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)
        return features.permute(0, 3, 1, 2) if self.channels_last_output else features


def build_timm_trunk(name: str, weights: str) -> Trunk:
    """The trunk of timm's ``name`` with ``weights``: ``default`` (timm's pretrained ones, downloaded into the
    Hugging Face cache once), a state_dict file of the whole model, or ``random``."""
    timm = import_timm()
    if not timm.is_model(name):
        raise SettingsError(f"unknown timm model {name!r}: see timm.list_models(), e.g. {EXAMPLES}")
    read = None if weights == "default" else read_weights(weights, None, "embedder")
    with seeded_init():
        model = _create(timm, name, pretrained=read is None)
    identity = pretrained_identity(model) if read is None else apply_weights(model, read)
    model.reset_classifier(0)
    config = model.pretrained_cfg
    side = int(config.get("input_size", (3, 224, 224))[-1])
    mean, std = tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD))
    with torch.inference_mode():
        shape = tuple(model.eval().forward_features(torch.zeros(1, 3, side, side)).shape)
    channels = model.num_features
    if len(shape) == 3:
        prefix = int(getattr(model, "num_prefix_tokens", 0))
        natural = "gap" if not prefix or getattr(model, "global_pool", "") == "avg" else "cls"
        patch = getattr(getattr(model, "patch_embed", None), "patch_size", (1,))[0]
        module = ForwardFeatures(model, False)
        return Trunk(module, "tokens", channels, identity, side, mean, std, patch, prefix, natural)
    module = ForwardFeatures(model, len(shape) == 4 and shape[1] != channels and shape[-1] == channels)
    return Trunk(module, "map" if len(shape) == 4 else "vector", channels, identity, side, mean, std)


def import_timm():
    """The ``timm`` module, or a ``SettingsError`` saying how to install it."""
    try:
        import timm
    except ImportError:
        raise SettingsError("timm:NAME needs timm: pip install 'retrieval[timm]'") from None
    return timm


def pretrained_identity(model: nn.Module) -> dict:
    """The identity of timm's pretrained weights in ``model``: where they come from and a hash of its tensors."""
    config = model.pretrained_cfg
    source = config.get("hf_hub_id") or config.get("url") or config.get("architecture", "")
    return {"source": "default", "name": f"timm:{source}", "state_sha256": state_fingerprint(model)}


def _create(timm, name: str, pretrained: bool) -> nn.Module:
    """``timm.create_model``; a failed download of pretrained weights is a one-line ``WeightsError``."""
    try:
        return timm.create_model(name, pretrained=pretrained)
    except (OSError, RuntimeError) as error:
        if not pretrained:
            raise
        from huggingface_hub.constants import HF_HUB_CACHE

        raise WeightsError(
            f"could not get timm's pretrained weights of {name!r} ({first_line(error)}): they are downloaded into "
            f"{HF_HUB_CACHE} once online; or pass a weights file path, or 'random' for a smoke run"
        ) from None
