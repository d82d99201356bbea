"""Models: detectors (``detectors/``), embedders (``embedders/``, one module each, found by the registry),
pooling layers, and the CPU/GPU fast paths (``accel/``).

The names below are imported on first use, so importing this package does not import torch.
"""

from __future__ import annotations

import importlib

from .registry import EMBEDDERS, Embedder, EmbedderEntry, build_detector, build_embedder, register_embedder, resolve_device

_LAZY = {
    "FasterRCNNModel": "retrieval.models.detectors.faster_rcnn",
    "COCO_CATEGORIES": "retrieval.models.detectors.faster_rcnn",
    "ResNet50Embedder": "retrieval.models.embedders.resnet50",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COCO_CATEGORIES",
    "EMBEDDERS",
    "Embedder",
    "EmbedderEntry",
    "FasterRCNNModel",
    "ResNet50Embedder",
    "build_detector",
    "build_embedder",
    "register_embedder",
    "resolve_device",
]
