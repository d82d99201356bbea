"""Models behind two small interfaces.

- A detector turns images into ``ImageObjects`` (boxes, labels, scores):
  ``detect(images, with_vectors) -> list[ImageObjects]``.
- An embedder turns images and boxes into unit vectors:
  ``embed(images, boxes) -> list[(N_i, dimension) float32]``, with
  ``dimension`` and ``identity`` (the weights identity recorded in the manifest).

``FasterRCNNModel`` is both (its box head is the ``roi`` embedder);
``ResNet50Embedder`` is an embedder.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

from ..errors import SettingsError
from ..settings import IndexSettings
from .detectors.faster_rcnn import COCO_CATEGORIES, FasterRCNNModel
from .embedders.resnet50 import ResNet50Embedder


class Embedder(Protocol):
    dimension: int
    identity: dict

    def embed(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu or auto")
    return torch.device(name)


def build_detector(settings: IndexSettings, device: torch.device) -> FasterRCNNModel:
    """The Faster R-CNN the settings ask for (detector weights, thresholds, classes, input size)."""
    return FasterRCNNModel(
        settings.detector_weights,
        device,
        min_size=settings.min_size,
        max_size=settings.max_size,
        score_threshold=settings.score_threshold,
        max_objects=settings.max_objects,
        classes=settings.classes,
        precision=settings.precision,
        detector=settings.detector,
    )


def build_embedder(settings: IndexSettings, device: torch.device, detector: FasterRCNNModel | None = None) -> Embedder:
    """The embedder the settings name; for ``roi`` that is ``detector`` itself (built if not given)."""
    if settings.embedder == "roi":
        return detector if detector is not None else build_detector(settings, device)
    return ResNet50Embedder(settings.weights, device, settings.precision)


__all__ = [
    "COCO_CATEGORIES",
    "Embedder",
    "FasterRCNNModel",
    "ResNet50Embedder",
    "build_detector",
    "build_embedder",
    "resolve_device",
]
