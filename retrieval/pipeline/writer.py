"""Writer: mapped items → the store, committing every ``commit_seconds``, counting what happened."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from ..index.store import StoreWriter
from ..objects import ImageObjects
from .reader import ForgetFile, GalleryImage, SkippedItem, UnchangedItem, VideoDone

log = logging.getLogger(__name__)


@dataclass
class IndexSummary:
    """What ``build_index`` did.

    Attributes:
        images, objects: indexed images and stored objects (vectors) after the run.
        videos, frames: indexed videos and their sampled frames after the run.
        added, updated, unchanged, removed: gallery files (images, videos) new to the index, re-indexed
            because their content changed, passed over, and removed (``prune``).
        frames_added: frames embedded in this run.
        skipped: ``(item key, reason)`` for each item (or file, folder) not indexed.
        gone: indexed items no longer in the gallery and kept (no ``prune``).
        rebuilt: True when a new store replaced the old one (``rebuild`` with other settings).
        seconds: wall time of the run.
        stage_seconds: time spent loading the models, waiting for decoded images (``read``), in the
            models (``map``) and writing.
    """

    images: int = 0
    objects: int = 0
    videos: int = 0
    frames: int = 0
    frames_added: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    rebuilt: bool = False
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class IndexWriter:
    """Applies each batch's results to one ``StoreWriter`` and keeps the ``IndexSummary``."""

    def __init__(self, store: StoreWriter, commit_seconds: float) -> None:
        self.store = store
        self.commit_seconds = commit_seconds
        self.known = store.items()
        self.summary = IndexSummary()
        self._last_commit = time.perf_counter()

    def skip(self, skipped: SkippedItem) -> None:
        """Record an item (or file, folder) that could not be indexed."""
        self.store.put_skipped(skipped.key, skipped.reason, skipped.file_size, skipped.mtime_ns, kind=skipped.kind)
        self.summary.skipped.append((skipped.key, skipped.reason))
        log.info("skipped %s: %s", skipped.key, skipped.reason)

    def write(self, batch: Sequence, found: Sequence[ImageObjects | SkippedItem]) -> None:
        """Store one batch, in order: ``found[i]`` is the mapper's result for the i-th ``GalleryImage`` of
        ``batch``."""
        results = iter(found)
        for item in batch:
            if isinstance(item, GalleryImage):
                self._put(item, next(results))
            elif isinstance(item, SkippedItem):
                self.skip(item)
            elif isinstance(item, UnchangedItem):
                if item.file_size is not None:
                    self.store.touch(item.key, item.file_size, item.mtime_ns, whole_file=item.whole_file)
                self.summary.unchanged += not item.frame
            elif isinstance(item, ForgetFile):
                self.store.forget_file(item.path, item.keep)
            elif isinstance(item, VideoDone):
                self.store.put_video(item.key, item.record)
                self._count_file(item.key)
        if time.perf_counter() - self._last_commit >= self.commit_seconds:
            self.store.commit()
            self._last_commit = time.perf_counter()

    def _put(self, item: GalleryImage, objects: ImageObjects | SkippedItem) -> None:
        if isinstance(objects, SkippedItem):
            image = item.image
            self.skip(dataclasses.replace(objects, file_size=image.file_size, mtime_ns=image.mtime_ns))
            return
        self.store.put_item(item.key, item.image, objects, item.source_key, path=item.path, frame=item.frame)
        if item.frame is not None:
            self.summary.frames_added += 1
        else:
            self._count_file(item.key)

    def _count_file(self, key: str) -> None:
        """Count a gallery file just stored as new or changed."""
        before = self.known.get(key)
        if before is not None and before.status == "indexed":
            self.summary.updated += 1
        else:
            self.summary.added += 1

    def finish(self, present: set[str], prune: bool) -> IndexSummary:
        """Deal with known items not ``present`` in the gallery any more (listed keys; for a video and its
        frames, the video's key): pruned, or reported as gone (each file once)."""
        known = self.known
        absent = {
            key: state
            for key, state in known.items()
            if (state.path if state.kind in ("video", "frame") else key) not in present
        }
        self.store.remove(key for key, state in absent.items() if state.status == "skipped")
        gone = [key for key, state in absent.items() if state.status == "indexed"]
        if prune:
            self.summary.removed = sum(known[key].kind != "frame" for key in gone)
            self.store.remove(gone)
        else:
            self.summary.gone = sorted({known[key].path or key for key in gone})
        counts = self.store.counts()
        self.summary.images, self.summary.objects = counts["images"], counts["objects"]
        self.summary.videos, self.summary.frames = counts["videos"], counts["frames"]
        return self.summary
