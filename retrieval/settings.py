"""The settings that decide what an index contains, as one frozen dataclass.

``IndexSettings`` travels from the CLI (or the Python API) through the whole
indexing pipeline and is recorded in the index manifest, so that a query knows
which models made the vectors it searches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .models.detectors.architectures import DEFAULT_DETECTOR, DETECTOR_NAMES
from .models.accel.speed import PRECISIONS
from .index.stores.faiss_kinds import check_index_type

EMBEDDERS = ("roi", "resnet50")
OBJECT_SOURCES = ("detect", "whole", "annotations")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class IndexSettings:
    """What to find in each gallery image and how to embed it.

    Attributes:
        embedder: ``roi`` (the detector's 1024-d box-head features) or
            ``resnet50`` (2048-d global-average-pooled ResNet50 of each crop).
        objects: ``detect`` (Faster R-CNN boxes), ``whole`` (the full image is
            one object) or ``annotations`` (boxes from ``annotations``).
        annotations: a COCO JSON file or a YOLO labels folder, for
            ``objects="annotations"``.
        weights: the embedding model's weights: ``default``, ``random`` or a
            state_dict path. For ``roi`` the embedder is the detector.
        detector_weights: the detector's weights, same forms.
        detector: the detector: an architecture name (``resnet50_fpn``, ``resnet50_fpn_v2``,
            ``mobilenet_v3_large_fpn``, ``mobilenet_v3_large_320_fpn``) with COCO classes, or a checkpoint
            file of ``retrieval train-detector`` (its own classes and weights).
        score_threshold: detections scoring below this are dropped.
        max_objects: at most this many detections per image (highest first).
        classes: keep only detections of these COCO class names (empty: all).
        min_size, max_size: the detector's input size: the short side is
            resized to ``min_size`` unless the long side would pass ``max_size``
            (torchvision's GeneralizedRCNNTransform).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto`` (bf16 where the hardware is fast at it), ``fp32``, ``bf16`` or ``fp16`` (GPUs).
        index_type: the FAISS index kind (``auto``, ``flat``, ``hnsw``, ``ivf``, ``ivfpq``) or a factory string.
    """

    embedder: str = "roi"
    objects: str = "detect"
    annotations: str | None = None
    weights: str = "default"
    detector_weights: str = "default"
    detector: str = DEFAULT_DETECTOR
    score_threshold: float = 0.5
    max_objects: int = 20
    classes: tuple[str, ...] = ()
    min_size: int = 800
    max_size: int = 1333
    device: str = "auto"
    precision: str = "auto"
    index_type: str = "auto"

    def __post_init__(self) -> None:
        if self.embedder == "roi":
            self._unify_roi_weights()
        if self.embedder not in EMBEDDERS:
            raise SettingsError(f"unknown embedder {self.embedder!r}: use one of {', '.join(EMBEDDERS)}")
        if self.objects not in OBJECT_SOURCES:
            raise SettingsError(f"unknown object source {self.objects!r}: use one of {', '.join(OBJECT_SOURCES)}")
        if self.objects == "annotations" and not self.annotations:
            raise SettingsError(
                "--objects annotations needs --annotations FILE (a COCO JSON file or a YOLO labels folder)"
            )
        if self.objects != "annotations" and self.annotations:
            raise SettingsError("--annotations is only used with --objects annotations")
        if self.device not in DEVICES:
            raise SettingsError(f"unknown device {self.device!r}: use one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        check_index_type(self.index_type)
        if self.detector not in DETECTOR_NAMES and not Path(self.detector).suffix:
            raise SettingsError(
                f"--detector {self.detector!r} is neither a detector ({', '.join(DETECTOR_NAMES)}) "
                "nor a checkpoint file (.pt) written by 'retrieval train-detector'"
            )
        if not 0.0 <= self.score_threshold <= 1.0:
            raise SettingsError(f"--score-threshold {self.score_threshold} must lie between 0 and 1")
        if self.max_objects < 1:
            raise SettingsError(f"--max-objects {self.max_objects} must be at least 1")
        if self.min_size < 32 or self.max_size < self.min_size:
            raise SettingsError(
                f"detector input size min {self.min_size}, max {self.max_size}: need 32 <= min-size <= max-size"
            )

    def _unify_roi_weights(self) -> None:
        """For ``roi`` the embedder is the detector: one weights value names both."""
        given = {w for w in (self.weights, self.detector_weights) if w != "default"}
        if len(given) > 1:
            raise SettingsError(
                "with --embedder roi the embedder is the detector: give --weights or --detector-weights, "
                f"not two different values ({self.weights!r}, {self.detector_weights!r})"
            )
        chosen = given.pop() if given else "default"
        object.__setattr__(self, "weights", chosen)
        object.__setattr__(self, "detector_weights", chosen)

    def resolved(self) -> "IndexSettings":
        """A copy with file paths (annotations, weights files) made absolute, as the manifest records them."""
        return dataclasses.replace(
            self,
            annotations=str(Path(self.annotations).absolute()) if self.annotations else None,
            weights=_absolute_weights(self.weights),
            detector_weights=_absolute_weights(self.detector_weights),
            detector=self.detector if self.detector in DETECTOR_NAMES else _absolute_weights(self.detector),
        )

    def vector_settings(self) -> dict[str, Any]:
        """The settings that decide the stored boxes and vectors; two indexes agreeing on these are comparable.

        ``device``, ``precision`` (bf16 and fp32 vectors agree to a cosine above 0.99) and ``index_type``
        never matter; detector settings matter only when a detector is used, and the detection filters
        (threshold, count, classes) only with ``objects="detect"``.
        """
        values = self.to_dict()
        ignored = {"device", "precision", "index_type"}
        if not self.uses_detector:
            ignored |= {"detector_weights", "detector", "min_size", "max_size"}
        if self.objects != "detect":
            ignored |= {"score_threshold", "max_objects", "classes"}
        return {name: value for name, value in values.items() if name not in ignored}

    @property
    def uses_detector(self) -> bool:
        """True when a Faster R-CNN model is needed (to detect, or to embed with ``roi``)."""
        return self.objects == "detect" or self.embedder == "roi"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``classes`` as a list)."""
        values = dataclasses.asdict(self)
        values["classes"] = list(self.classes)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "IndexSettings":
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown settings {', '.join(unknown)} (written by a newer version?)")
        values = dict(values)
        values["classes"] = tuple(values.get("classes") or ())
        return cls(**values)


def _absolute_weights(spec: str) -> str:
    return spec if spec in ("default", "random") else str(Path(spec).expanduser().absolute())
