"""Models: detectors (``detectors/``), embedders (``embedders/``, one module each, found by the registry),
pooling layers, and the CPU/GPU fast paths (``accel/``).

The names below are imported on first use, so importing this package does not import torch.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from .registry import (
    EMBEDDERS,
    Embedder,
    EmbedderEntry,
    build_detector,
    build_embedder,
    register_embedder,
    resolve_device,
)

_LAZY = {
    "FasterRCNNModel": "retrieval.models.detectors.faster_rcnn",
    "COCO_CATEGORIES": "retrieval.models.detectors.faster_rcnn",
    "ResNet50Embedder": "retrieval.models.backbones.resnet",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


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
