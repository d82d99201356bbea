"""roi: the detector's own 1024-d box-head features for each box, pooled from the backbone pass that detected it.

The embedder is the detector (``models/detectors/faster_rcnn.py``), so ``--weights`` and
``--detector-weights`` name one model, and with ``--objects detect`` one forward gives boxes and vectors.
"""

from __future__ import annotations

from ..registry import EmbedderEntry, build_detector


def _build(settings, device, detector):
    return detector if detector is not None else build_detector(settings, device)


ENTRY = EmbedderEntry(
    build=_build,
    summary="the detector's 1024-d box-head features (same forward pass)",
    is_detector=True,
)
