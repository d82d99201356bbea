"""resnet50: each box cropped from the original image and squashed to 224x224, ResNet50 trunk + GAP, 2048-d.

Preprocessing, per box: crop ``x1, y1, x2, y2`` (original pixels, widened to
whole pixels) from the RGB image, *squash* it to 224x224 (aspect ratio not
kept, so the whole box is seen and nothing is padded), scale to [0, 1],
normalise with the ImageNet mean and std, run the ResNet50 trunk and global
average pooling → 2048 values, then L2-normalise. ``--crop``, ``--margin``,
``--input-size``, ``--pooling`` and ``--scales`` change these steps
(``models/crop_embedder.py``).
"""

from __future__ import annotations

from ..registry import CROP_AND_POOLING, EmbedderEntry


def _build(settings, device, detector):
    from ..backbones.resnet import ResNet50Embedder
    from ..crop_embedder import CropOptions

    return ResNet50Embedder(settings.weights, device, settings.precision, CropOptions.of(settings))


ENTRY = EmbedderEntry(build=_build, summary="2048-d ResNet50 GAP vector of each crop", options=CROP_AND_POOLING)
