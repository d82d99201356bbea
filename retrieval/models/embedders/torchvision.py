"""torchvision:NAME: any torchvision classification model's trunk (resnet101, convnext_tiny, vit_b_16, ...), pooled.

NAME is one of ``torchvision.models.list_models(module=torchvision.models)``. The model without its
classifier gives a feature map (CNNs, Swin, MaxViT: the last ``(C, h, w)`` map before the classifier),
pooled by ``--pooling`` (GAP by default, GeM, MAC), or for ViTs its encoder's tokens (``--pooling cls``, the
default: the CLS token; gap, gem, mac: the patch tokens pooled). Crops are the side its DEFAULT weights
were trained at (``--input-size`` to change), normalised with their mean and std. ``--weights default``
downloads those weights into the torch cache once; a state_dict file of the whole classification model or
``random`` also work. The dimension is the model's feature width (2048 for resnet101, 768 for vit_b_16).
"""

from __future__ import annotations

from ..registry import CROP_AND_POOLING, EmbedderEntry


def _build(settings, device, detector):
    from ..backbones.torchvision_zoo import build_torchvision_trunk
    from ..backbones.zoo import zoo_embedder

    name = settings.embedder.partition(":")[2].strip()
    return zoo_embedder(build_torchvision_trunk(name, settings.weights), settings, device, f"torchvision:{name}")


ENTRY = EmbedderEntry(
    build=_build,
    summary="any torchvision classification model's trunk, pooled",
    options=CROP_AND_POOLING,
    argument="NAME",
)
