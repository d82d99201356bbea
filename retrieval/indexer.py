"""Runner: walk a gallery, read images, map them to objects and vectors, write the index.

``build_index`` is the whole ``retrieval index`` command as a function. Each
stage (reader, mapper, writer) is timed, as in clip-retrieval's runner.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .files import walk_gallery
from .images import DEFAULT_MAX_PIXELS
from .manifest import Manifest
from .mapper import ObjectMapper
from .objects import ImageObjects
from .reader import GalleryImage, SkippedFile, batched, read_images
from .settings import IndexSettings
from .store import IndexWriter, check_new_index_folder

log = logging.getLogger(__name__)

IMAGES_PER_BATCH = 1
COMMIT_SECONDS = 30.0


@dataclass
class IndexSummary:
    """What ``build_index`` did.

    Attributes:
        images: images indexed.
        objects: objects (vectors) stored.
        skipped: ``(path relative to the gallery, reason)`` for each file not indexed.
        seconds: wall time of the run.
        stage_seconds: time spent reading (decoding), mapping (models) and writing.
    """

    images: int = 0
    objects: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def build_index(
    gallery: str | os.PathLike,
    index_dir: str | os.PathLike,
    settings: IndexSettings = IndexSettings(),
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> IndexSummary:
    """Index every image under ``gallery`` into a new index folder ``index_dir``."""
    started = time.perf_counter()
    index_dir = Path(index_dir).absolute()
    check_new_index_folder(index_dir)  # before the slow model loading
    listing = walk_gallery(gallery, exclude=(index_dir,))
    mapper = ObjectMapper(settings)
    detector, embedder = mapper.models
    writer = IndexWriter(index_dir, Manifest(settings, embedder, detector, str(listing.root)))
    summary = IndexSummary()
    for rel_path, reason in listing.problems:
        _skip(writer, summary, SkippedFile(rel_path, reason))

    bar = tqdm(total=len(listing.images), unit="img", desc="indexing", disable=not progress, file=sys.stderr)
    items = _timed(read_images(listing.root, listing.images, max_pixels), summary.stage_seconds, "read")
    last_commit = time.perf_counter()
    for batch in batched(items, IMAGES_PER_BATCH):
        images = [item for item in batch if isinstance(item, GalleryImage)]
        for item in batch:
            if isinstance(item, SkippedFile):
                _skip(writer, summary, item)
        with _stage(summary.stage_seconds, "map"):
            found = _map_isolating_failures(mapper, images)
        with _stage(summary.stage_seconds, "write"):
            for item, objects in zip(images, found):
                if isinstance(objects, SkippedFile):
                    _skip(writer, summary, objects)
                else:
                    writer.add_image(item.rel_path, item.image, objects)
                    summary.images += 1
                    summary.objects += len(objects)
            if time.perf_counter() - last_commit > COMMIT_SECONDS:
                writer.commit()
                last_commit = time.perf_counter()
        bar.update(len(batch))
        bar.set_postfix(objects=summary.objects, skipped=len(summary.skipped), refresh=False)
    bar.close()
    with _stage(summary.stage_seconds, "write"):
        writer.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _map_isolating_failures(mapper: ObjectMapper, images: list[GalleryImage]) -> list[ImageObjects | SkippedFile]:
    """Run the mapper on a batch; if it fails, run each image alone so one bad image cannot stop the run."""
    if not images:
        return []
    try:
        return mapper(images)
    except (RuntimeError, ValueError) as error:
        if len(images) > 1:
            return [result for image in images for result in _map_isolating_failures(mapper, [image])]
        log.debug("model failed on %s", images[0].rel_path, exc_info=True)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [SkippedFile(images[0].rel_path, f"the model failed on this image ({first_line[:200]})")]


def _skip(writer: IndexWriter, summary: IndexSummary, skipped: SkippedFile) -> None:
    writer.add_skipped(skipped.rel_path, skipped.reason)
    summary.skipped.append((skipped.rel_path, skipped.reason))
    log.info("skipped %s: %s", skipped.rel_path, skipped.reason)


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] += time.perf_counter() - start


def _timed(items: Iterator, seconds: dict[str, float], name: str) -> Iterator:
    """Yield from ``items``, adding the time spent producing each to ``seconds[name]``."""
    while True:
        with _stage(seconds, name):
            item = next(items, None)
        if item is None:
            return
        yield item
