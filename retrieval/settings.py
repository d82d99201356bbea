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
from .index.stores import STORES
from .models.crop_options import CROP_DEFAULTS
from .models.names import CROP_MODES, DEFAULT_DETECTOR, DETECTOR_NAMES, DEVICES, POOLINGS, PRECISIONS
from .models.registry import EMBEDDERS
from .sources import SOURCES
from .sources.video import DEFAULT_MIN_CHANGE, DEFAULT_VIDEO_FPS, VideoSampling
from .validation import check_choice, check_detector_input, check_float, check_int

OBJECT_SOURCES = ("detect", "whole", "annotations")
# The crop and pooling settings, by field name → option name; an embedder honours those its entry lists.
CROP_OPTIONS = {
    "pooling": "--pooling",
    "gem_p": "--gem-p",
    "scales": "--scales",
    "crop": "--crop",
    "margin": "--margin",
    "input_size": "--input-size",
}
# Settings that decide the searched vectors but not the stored ones: changing them re-derives, not re-embeds.
SEARCH_SPACE_OPTIONS = ("whiten", "dba")
# Settings that decide which video frames are items: each video records its own, and is re-sampled alone.
VIDEO_SAMPLING_OPTIONS = ("video_fps", "video_min_change")
MAX_SCALE = 4.0


@dataclass(frozen=True)
class IndexSettings:
    """What to find in each gallery image and how to embed it.

    Attributes:
        embedder: a registered embedder (``models.registry.EMBEDDERS``): ``roi`` (the detector's 1024-d
            box-head features), ``resnet50`` (2048-d global-average-pooled ResNet50 of each crop), ...
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
        index_type: the FAISS index kind (``auto``, ``flat``, ``hnsw``, ``ivf``, ``ivfpq``) or a factory string;
            checked by the vector store (``check_parts``), as other stores may read it otherwise.
        vector_store: a registered vector store (``index.stores.STORES``): ``faiss``, ``milvus``.
        milvus_uri: where the ``milvus`` store keeps the vectors: empty for a Milvus Lite file in the index,
            or ``milvus://HOST:PORT/COLLECTION`` for a Milvus server (``index/stores/milvus.py``).
        source: a registered gallery source (``sources.SOURCES``): ``folder``, what the gallery is.
        pooling: how a crop embedder pools its feature map: ``auto`` (the model's own: GAP for convolutional
            trunks, the CLS token for transformers), ``gap``, ``gem``, ``mac``, or ``cls`` (transformers).
        gem_p: GeM's exponent (``pooling="gem"``); p = 1 is GAP.
        scales: crop sides as fractions of ``input_size``; the unit vectors of each scale are averaged and
            re-normalised (multi-scale descriptors). ``(1.0,)`` is single-scale.
        crop: how a box becomes the model's square input: ``squash`` (resized, aspect ratio not kept) or
            ``pad`` (resized to fit, aspect ratio kept, padded with the normalisation mean).
        margin: context around each box, as a fraction of its width and height added on every side (clipped
            to the image).
        input_size: the crop embedder's input side in pixels; 0 is the model's own (224 for most).
        whiten: PCA whitening learned on the gallery's vectors: 0 off, N keeps N dimensions, -1 all.
        dba: database-side augmentation: each gallery vector is replaced by the weighted mean of itself and
            its ``dba`` nearest neighbours (0 off).
        video_fps: frames sampled per second of video (``sources/video.py``).
        video_min_change: a sampled frame whose 32x32 grey thumbnail differs from the last kept frame's by
            less than this (mean absolute difference, a fraction of full scale) is a near-duplicate, passed
            over; 0 keeps every sampled frame. Changing either re-samples the videos alone.
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
    vector_store: str = "faiss"
    milvus_uri: str = ""
    source: str = "folder"
    pooling: str = CROP_DEFAULTS.pooling
    gem_p: float = CROP_DEFAULTS.gem_p
    scales: tuple[float, ...] = CROP_DEFAULTS.scales
    crop: str = CROP_DEFAULTS.crop
    margin: float = CROP_DEFAULTS.margin
    input_size: int = CROP_DEFAULTS.input_size
    whiten: int = 0
    dba: int = 0
    video_fps: float = DEFAULT_VIDEO_FPS
    video_min_change: float = DEFAULT_MIN_CHANGE

    def __post_init__(self) -> None:
        for name, registry in (("embedder", EMBEDDERS), ("vector_store", STORES), ("source", SOURCES)):
            if getattr(self, name) not in registry:
                registry.get(getattr(self, name))  # the error naming the known ones
        if self.embedder_is_detector:
            self._unify_roi_weights()
        check_choice("object source", self.objects, OBJECT_SOURCES)
        if self.objects == "annotations" and not self.annotations:
            raise SettingsError(
                "--objects annotations needs --annotations FILE (a COCO JSON file or a YOLO labels folder)"
            )
        if self.objects != "annotations" and self.annotations:
            raise SettingsError("--annotations is only used with --objects annotations")
        if self.milvus_uri and self.vector_store != "milvus":
            raise SettingsError("--milvus-uri is only used with --vector-store milvus")
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.index_type, str) or not self.index_type.strip():
            raise SettingsError(f"--index-type {self.index_type!r} must name an index kind or a factory string")
        if self.detector not in DETECTOR_NAMES and not Path(self.detector).suffix:
            raise SettingsError(
                f"--detector {self.detector!r} is neither a detector ({', '.join(DETECTOR_NAMES)}) "
                "nor a checkpoint file (.pt) written by 'retrieval train-detector'"
            )
        check_detector_input(self.min_size, self.max_size, self.score_threshold, self.max_objects)
        self._check_crop_options()
        check_int("--whiten", self.whiten, low=-1)
        check_int("--dba", self.dba, low=0, high=1000)
        VideoSampling(self.video_fps, self.video_min_change)  # checks both

    def _check_crop_options(self) -> None:
        """The crop and pooling values, and that the embedder honours each one given."""
        if isinstance(self.scales, list):  # as to_dict writes them
            object.__setattr__(self, "scales", tuple(self.scales))
        check_choice("--pooling", self.pooling, POOLINGS)
        check_float("--gem-p", self.gem_p, low=1.0, high=100.0)
        if self.gem_p != CROP_DEFAULTS.gem_p and self.pooling != "gem":
            raise SettingsError(f"--gem-p {self.gem_p} is GeM's exponent: give it with --pooling gem")
        if not isinstance(self.scales, tuple) or not self.scales:
            raise SettingsError(f"--scales {self.scales!r} must be one or more numbers, e.g. 1,0.707,0.5")
        for scale in self.scales:
            check_float("--scales", scale, low=0.1, high=MAX_SCALE)
        check_choice("--crop", self.crop, CROP_MODES)
        check_float("--margin", self.margin, low=0.0, high=1.0)
        if self.input_size != 0:
            check_int("--input-size", self.input_size, low=32, high=2048)
        honoured = EMBEDDERS.get(self.embedder).options
        for field, option in CROP_OPTIONS.items():
            if getattr(self, field) != _DEFAULTS[field] and field not in honoured:
                raise SettingsError(
                    f"{option} does not apply to --embedder {self.embedder}: "
                    "use a crop embedder (efficientnet_lite0, resnet50, torchvision:NAME, hub:REPO:MODEL)"
                )

    def check_parts(self) -> None:
        """The checks that the chosen parts make of their own options (the vector store's ``index_type``).

        ``build_index`` runs them before any model is loaded; they may import the part's library.
        """
        STORES.get(self.vector_store).check(self)

    @property
    def embedder_is_detector(self) -> bool:
        """True when the embedder is the detector itself (``roi``): one model, one weights value."""
        return EMBEDDERS.get(self.embedder).is_detector

    def _unify_roi_weights(self) -> None:
        """When the embedder is the detector (``roi``), one weights value names both."""
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
            embedder=_absolute_hub_checkout(self.embedder),
            annotations=str(Path(self.annotations).absolute()) if self.annotations else None,
            weights=_absolute_weights(self.weights),
            detector_weights=_absolute_weights(self.detector_weights),
            detector=self.detector if self.detector in DETECTOR_NAMES else _absolute_weights(self.detector),
        )

    def vector_settings(self) -> dict[str, Any]:
        """The settings that decide the stored boxes and vectors; two indexes agreeing on these are comparable.

        ``device``, ``precision`` (bf16 and fp32 vectors agree to a cosine above 0.99), ``index_type``,
        ``vector_store`` and ``milvus_uri`` never matter (changing them moves the stored vectors), nor do ``whiten``
        and ``dba`` (changing them re-derives the searched vectors from the stored ones) or the video sampling (each
        video records its own and is sampled again when it differs); detector settings matter only
        when a detector is used, and the detection filters (threshold, count, classes) only with
        ``objects="detect"``.
        """
        values = self.to_dict()
        ignored = {"device", "precision", "index_type", "vector_store", "milvus_uri", *SEARCH_SPACE_OPTIONS}
        ignored |= set(VIDEO_SAMPLING_OPTIONS)
        if not self.uses_detector:
            ignored |= {"detector_weights", "detector", "min_size", "max_size"}
        if self.objects != "detect":
            ignored |= {"score_threshold", "max_objects", "classes"}
        return {name: value for name, value in values.items() if name not in ignored}

    @property
    def uses_detector(self) -> bool:
        """True when a Faster R-CNN model is needed (to detect, or to embed with ``roi``)."""
        return self.objects == "detect" or self.embedder_is_detector

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``classes`` as a list)."""
        values = dataclasses.asdict(self)
        values["classes"] = list(self.classes)
        values["scales"] = list(self.scales)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "IndexSettings":
        """Inverse of ``to_dict``, every value checked as by the constructor; unknown keys are an error naming them."""
        return cls(**_known(cls, values))

    @classmethod
    def recorded(cls, values: dict[str, Any]) -> "IndexSettings":
        """Settings a manifest recorded, taken as they are: they were checked when written, so an index built
        with a plugin's part reads without that plugin loaded (``retrieval info``). Missing keys (older
        manifests) take their defaults; unknown keys are an error naming them."""
        values = _known(cls, values)
        settings = object.__new__(cls)
        for field in dataclasses.fields(cls):
            value = values[field.name] if field.name in values else field.default
            object.__setattr__(settings, field.name, value)
        return settings


def _known(cls, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``classes`` as a tuple; unknown keys are an error naming them."""
    unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
    if unknown:
        raise SettingsError(f"unknown settings {', '.join(unknown)} (written by a newer version?)")
    return {
        **values,
        "classes": tuple(values.get("classes") or ()),
        "scales": tuple(values.get("scales") or _DEFAULTS["scales"]),
    }


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(IndexSettings)}


def _absolute_hub_checkout(embedder: str) -> str:
    """``hub:./repo:MODEL`` (a local checkout given relative, or with ``~``) with the folder made absolute, so
    that a query from another working folder finds it; any other name as it is."""
    family, _, rest = embedder.partition(":")
    if family != "hub" or rest[:1] not in (".", "~"):
        return embedder
    folder, _, model = rest.rpartition(":")
    return f"hub:{Path(folder).expanduser().absolute()}:{model}"


def _absolute_weights(spec: str) -> str:
    return spec if spec in ("default", "random") else str(Path(spec).expanduser().absolute())
