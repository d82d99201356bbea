"""timm:NAME: any timm model's features (resnet50, convnext_tiny, vit_small_patch16_224, ...), pooled; needs timm.

NAME is one of ``timm.list_models()``; timm is an optional extra (``pip install 'retrieval[timm]'``). The
trunk is the model's ``forward_features``: a feature map for CNNs, pooled by ``--pooling`` (GAP by default,
GeM, MAC), or tokens for ViTs (``--pooling cls``, the default: the CLS token; gap, gem, mac: the patch tokens
pooled). Crops are the model's ``pretrained_cfg`` input side (``--input-size`` to change), normalised with
its mean and std. ``--weights default`` is timm's pretrained weights, downloaded into the Hugging Face cache
once; a state_dict file of the whole model or ``random`` also work. The dimension is ``num_features``.
"""

from __future__ import annotations

from ..registry import CROP_AND_POOLING, EmbedderEntry


def _build(settings, device, detector):
    from ..backbones.timm_zoo import build_timm_trunk
    from ..backbones.zoo import zoo_embedder

    name = settings.embedder.partition(":")[2].strip()
    return zoo_embedder(build_timm_trunk(name, settings.weights), settings, device, f"timm:{name}")


ENTRY = EmbedderEntry(
    build=_build, summary="any timm model's features, pooled", options=CROP_AND_POOLING, argument="NAME"
)
