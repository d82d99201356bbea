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
from .reader import GalleryImage, SkippedItem, UnchangedItem

log = logging.getLogger(__name__)


@dataclass
class IndexSummary:
    """What ``build_index`` did.

    Attributes:
        images, objects: indexed items (images) and stored objects (vectors) after the run.
        added, updated, unchanged, removed: items new to the index, re-indexed because their content
            changed, passed over, and removed (``prune``).
        skipped: ``(item key, reason)`` for each item (or file, folder) not indexed.
        gone: indexed items no longer in the gallery and kept (no ``prune``).
        rebuilt: True when a new store replaced the old one (``rebuild`` with other settings).
        seconds: wall time of the run.
        stage_seconds: time spent loading the models, waiting for decoded images (``read``), in the
            models (``map``) and writing.
    """

    images: int = 0
    objects: int = 0
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
        self.store.put_skipped(skipped.key, skipped.reason, skipped.file_size, skipped.mtime_ns)
        self.summary.skipped.append((skipped.key, skipped.reason))
        log.info("skipped %s: %s", skipped.key, skipped.reason)

    def write(self, batch: Sequence, found: Sequence[ImageObjects | SkippedItem]) -> None:
        """Store one batch: ``found[i]`` is the mapper's result for the i-th ``GalleryImage`` of ``batch``."""
        images = [item for item in batch if isinstance(item, GalleryImage)]
        for item in batch:
            if isinstance(item, SkippedItem):
                self.skip(item)
            elif isinstance(item, UnchangedItem):
                if item.file_size is not None:
                    self.store.touch(item.key, item.file_size, item.mtime_ns)
                self.summary.unchanged += 1
        for item, objects in zip(images, found):
            if isinstance(objects, SkippedItem):
                image = item.image
                self.skip(dataclasses.replace(objects, file_size=image.file_size, mtime_ns=image.mtime_ns))
                continue
            self.store.put_item(item.key, item.image, objects, item.source_key, path=item.path)
            before = self.known.get(item.key)
            if before is not None and before.status == "indexed":
                self.summary.updated += 1
            else:
                self.summary.added += 1
        if time.perf_counter() - self._last_commit >= self.commit_seconds:
            self.store.commit()
            self._last_commit = time.perf_counter()

    def finish(self, present: set[str], prune: bool) -> IndexSummary:
        """Deal with known items not ``present`` in the gallery any more (pruned, or reported as gone)."""
        known = self.known
        gone = [key for key, state in known.items() if key not in present and state.status == "indexed"]
        self.store.remove(key for key, state in known.items() if key not in present and state.status == "skipped")
        if prune:
            self.summary.removed = self.store.remove(gone)
        else:
            self.summary.gone = sorted(gone)
        counts = self.store.counts()
        self.summary.images, self.summary.objects = counts["images"], counts["objects"]
        return self.summary
