"""What the ``efficientnet_lite0/1/2`` entry modules share: their entry, built without importing torch."""

from __future__ import annotations

from functools import partial

from ..registry import CROP_AND_POOLING, EmbedderEntry


def _build(name: str, settings, device, detector):
    from ..backbones.efficientnet_lite import build_lite_embedder

    return build_lite_embedder(name, settings, device)


def lite_entry(name: str) -> EmbedderEntry:
    """The entry of ``efficientnet_<name>`` (``name`` is ``lite0``, ``lite1`` or ``lite2``)."""
    return EmbedderEntry(
        build=partial(_build, name),
        summary=f"1280-d EfficientNet-{name.title()} GAP vector of each crop (pretrained ImageNet weights, offline)",
        options=CROP_AND_POOLING,
    )
