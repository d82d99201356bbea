"""Distributors: where the mapper runs. Each takes a *builder* of the mapper and streams batches through it.

A distributor has one job: ``map(batches)`` yields ``(batch, results)`` for each batch, in order, where
``results[i]`` is the mapper's answer for the i-th ``GalleryImage`` of the batch (objects with vectors, or
a ``SkippedItem``). ``models`` describes the loaded models for the manifest. Running the mapper
elsewhere (other processes, a Ray cluster: ``ray_engine.py``) is a new distributor; the runner and writer
stay as they are. A distributor that ``reads_items`` is handed still images unread (``UnreadImage``) and
yields its batches with them read (``read_unread``), so decoding runs where the mapper runs.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from ..objects import ImageObjects
from .reader import GalleryImage, SkippedItem

log = logging.getLogger(__name__)


class Mapper(Protocol):
    images_per_batch: int
    models: tuple[dict | None, dict]

    def source_key(self, key: str) -> str | None: ...

    def __call__(self, batch: Sequence[GalleryImage]) -> list[ImageObjects | SkippedItem]: ...


class Distributor(Protocol):
    models: tuple[dict | None, dict]
    images_per_batch: int
    reads_items: bool

    def source_key(self, key: str) -> str | None: ...

    def map(self, batches: Iterable[list]) -> Iterator[tuple[list, list[ImageObjects | SkippedItem]]]: ...


class LocalDistributor:
    """Runs the mapper in this process: built once from ``mapper_builder``, every batch through it."""

    reads_items = False  # the reader decodes, in its background thread, while the models run

    def __init__(self, mapper_builder: Callable[[], Mapper]) -> None:
        self.mapper = mapper_builder()
        self.models = self.mapper.models
        self.images_per_batch = self.mapper.images_per_batch

    def source_key(self, key: str) -> str | None:
        return self.mapper.source_key(key)

    def map(self, batches: Iterable[list]) -> Iterator[tuple[list, list[ImageObjects | SkippedItem]]]:
        for batch in batches:
            images = [item for item in batch if isinstance(item, GalleryImage)]
            yield batch, map_isolating_failures(self.mapper, images)


def map_isolating_failures(mapper: Mapper, images: list[GalleryImage]) -> list[ImageObjects | SkippedItem]:
    """Run the mapper on a batch; if it fails, run each image alone so one bad image cannot stop the run."""
    if not images:
        return []
    try:
        return mapper(images)
    except (RuntimeError, ValueError) as error:
        if len(images) > 1:
            return [result for image in images for result in map_isolating_failures(mapper, [image])]
        log.debug("model failed on %s", images[0].key, exc_info=True)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [SkippedItem(images[0].key, f"the model failed on this image ({first_line[:200]})")]
