"""Mapper: decoded images → their objects with vectors, using the models the settings name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..annotations import AnnotationSet, load_annotations
from ..boxes import whole_image_box
from ..errors import AnnotationsError
from ..models.registry import Embedder, build_detector, build_embedder, resolve_device
from ..objects import ImageObjects
from ..settings import IndexSettings
from .reader import GalleryImage, SkippedItem

if TYPE_CHECKING:
    from ..models.detectors.faster_rcnn import FasterRCNNModel

CPU_IMAGES_PER_BATCH = 8  # enough crops to batch the crop embedder; more only holds more images in memory
GPU_IMAGES_PER_BATCH = 32  # two detector forwards of 16 images (GPU_IMAGES_PER_FORWARD)


class ObjectMapper:
    """Finds the objects of each image (detect, whole or annotations) and embeds them.

    With ``roi`` and ``detect`` one backbone forward gives both boxes and vectors.
    """

    def __init__(self, settings: IndexSettings, annotations: AnnotationSet | None = None) -> None:
        """Load the models ``settings`` name; ``annotations`` (loaded from ``settings.annotations`` if not given)."""
        self.settings = settings
        self.device = resolve_device(settings.device)
        if settings.objects == "annotations" and annotations is None:
            annotations = load_annotations(settings.annotations)
        self.annotations = annotations
        self.detector: FasterRCNNModel | None = (
            build_detector(settings, self.device) if settings.uses_detector else None
        )
        self.embedder: Embedder = build_embedder(settings, self.device, self.detector)
        self.images_per_batch = GPU_IMAGES_PER_BATCH if self.device.type == "cuda" else CPU_IMAGES_PER_BATCH
        """How many images the indexer hands over at once: crops are embedded together across them."""

    def source_key(self, key: str) -> str | None:
        """The key of an image's given boxes (annotations mode); ``None`` when boxes come from the image alone."""
        return self.annotations.key_for(key) if self.annotations is not None else None

    @property
    def models(self) -> tuple[dict | None, dict]:
        """The manifest entries ``(detector, embedder)`` describing the loaded models."""
        detector = None
        if self.detector is not None:
            detector = {"name": f"fasterrcnn_{self.detector.architecture}", "weights": self.detector.identity}
        embedder = {
            "name": self.settings.embedder,
            "dimension": self.embedder.dimension,
            "weights": self.embedder.identity,
        }
        return detector, embedder

    def __call__(self, batch: Sequence[GalleryImage]) -> list[ImageObjects | SkippedItem]:
        """Objects with vectors for each image, or a ``SkippedItem`` when its annotations do not fit it."""
        rgbs = [item.image.rgb for item in batch]
        if self.settings.objects == "detect":
            roi = self.embedder is self.detector
            found = self.detector.detect(rgbs, with_vectors=roi)
            if roi:
                return list(found)
        else:
            found = [self._given_objects(item) for item in batch]
        for i, objects in enumerate(found):
            if isinstance(objects, ImageObjects) and len(objects) == 0:
                found[i] = objects.with_vectors(np.zeros((0, self.embedder.dimension), dtype=np.float32))
        todo = [i for i, objects in enumerate(found) if isinstance(objects, ImageObjects) and objects.vectors is None]
        if todo:
            vectors = self.embedder.embed([rgbs[i] for i in todo], [found[i].boxes for i in todo])
            for i, image_vectors in zip(todo, vectors):
                found[i] = found[i].with_vectors(image_vectors)
        return found

    def _given_objects(self, item: GalleryImage) -> ImageObjects | SkippedItem:
        width, height = item.image.width, item.image.height
        if self.annotations is None:
            return ImageObjects.given(whole_image_box(width, height), [None])
        try:
            return self.annotations.objects_for(item.key, width, height)
        except AnnotationsError as error:
            return SkippedItem(item.key, str(error))
