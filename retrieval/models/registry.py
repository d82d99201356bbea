"""The embedder door: a protocol, an entry type and the registry of embedders by name.

An embedder turns images and boxes into unit vectors::

    embed(images: [(H_i, W_i, 3) uint8 RGB], boxes: [(N_i, 4) float32 x1, y1, x2, y2 original pixels])
        -> [(N_i, dimension) float32, L2-normalised rows]

It does its own preprocessing, and has a ``dimension`` and an ``identity`` (a JSON-ready dict naming its
weights, recorded in the manifest and compared at query time). Built-in embedders are the modules of
``retrieval.models.embedders``; ``register_embedder`` adds others at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from ..errors import SettingsError
from ..registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..settings import IndexSettings
    from .detectors.faster_rcnn import FasterRCNNModel


class Embedder(Protocol):
    dimension: int
    identity: dict

    def embed(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class EmbedderEntry:
    """How to build one kind of embedder.

    Attributes:
        build: ``(settings, device, detector) -> Embedder``; ``detector`` is the loaded detector when the
            settings use one (else ``None``), so an embedder that *is* the detector can share it.
        summary: one line for ``--help``.
        is_detector: the embedder is the detector itself (``roi``): one model, so ``--weights`` and
            ``--detector-weights`` name the same weights, and a detector is loaded even without ``detect``.
        options: the crop and pooling settings it honours (``settings.CROP_OPTIONS``: ``pooling``, ``gem_p``,
            ``scales``, ``crop``, ``margin``, ``input_size``); giving another is refused.
        argument: for a family (``torchvision:NAME``), what follows the colon, for help (``NAME``); the
            build reads it from ``settings.embedder``.
    """

    build: Callable[["IndexSettings", "torch.device", "FasterRCNNModel | None"], Embedder]
    summary: str = ""
    is_detector: bool = False
    options: frozenset[str] = frozenset()
    argument: str = ""


# What a crop embedder honours (``EmbedderEntry.options``): every crop and pooling setting.
CROP_AND_POOLING = frozenset({"pooling", "gem_p", "scales", "crop", "margin", "input_size"})

EMBEDDERS: Registry[EmbedderEntry] = Registry("embedder", "retrieval.models.embedders")


def register_embedder(name: str, entry: EmbedderEntry) -> EmbedderEntry:
    """Make ``entry`` available as ``--embedder name`` / ``IndexSettings(embedder=name)``."""
    return EMBEDDERS.register(name, entry)


def resolve_device(name: str) -> "torch.device":
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu or auto")
    return torch.device(name)


def build_detector(settings: "IndexSettings", device: "torch.device") -> "FasterRCNNModel":
    """The Faster R-CNN the settings ask for (detector weights, thresholds, classes, input size)."""
    from .detectors.faster_rcnn import FasterRCNNModel

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


def build_embedder(
    settings: "IndexSettings", device: "torch.device", detector: "FasterRCNNModel | None" = None
) -> Embedder:
    """The embedder the settings name, built by its registry entry."""
    return EMBEDDERS.get(settings.embedder).build(settings, device, detector)
