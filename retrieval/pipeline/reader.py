"""Reader: a gallery source's items → decoded images, in order; unchanged items passed over, unreadable ones set aside.

An item whose fingerprint (file size and mtime) matches what the index stored is not read at all. An
item whose content hashes to the stored sha256 is not decoded (only its fingerprint is refreshed).
Everything else is read, hashed and decoded by the source.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from queue import Full, Queue
from typing import Callable, Iterable, Iterator

from ..errors import ImageError
from ..images import DEFAULT_MAX_PIXELS, LoadedImage
from ..index.metadata import ItemState
from ..sources import GallerySource


@dataclass(frozen=True)
class GalleryImage:
    """A decoded item: its key, the file it comes from (relative to the gallery root), and its boxes' key."""

    key: str
    path: str
    image: LoadedImage
    source_key: str | None = None


@dataclass(frozen=True)
class UnchangedItem:
    """An item already indexed with the same content; ``file_size``/``mtime_ns`` are set when they changed."""

    key: str
    file_size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class SkippedItem:
    """An item (or a file or folder) that was not indexed, and why (one line naming the problem)."""

    key: str
    reason: str
    file_size: int | None = None
    mtime_ns: int | None = None


def read_items(
    source: GallerySource,
    keys: Iterable[str],
    known: dict[str, ItemState] | None = None,
    source_key: Callable[[str], str | None] = lambda key: None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[GalleryImage | UnchangedItem | SkippedItem]:
    """Classify and, where needed, decode each of ``source``'s items ``keys`` in order.

    Args:
        known: what the index already holds, by key.
        source_key: the key of an item's given boxes (annotations); an item whose key changed is re-indexed.
    """
    known = known or {}
    for key in keys:
        previous = known.get(key)
        boxes_key = source_key(key)
        same_boxes = previous is not None and previous.status == "indexed" and previous.source_key == boxes_key
        size = mtime = None
        try:
            size, mtime = source.fingerprint(key)
            if same_boxes and (previous.file_size, previous.mtime_ns) == (size, mtime):
                yield UnchangedItem(key)
                continue
            image = source.read(key, max_pixels, previous.sha256 if same_boxes else None)
            if image is None:
                yield UnchangedItem(key, size, mtime)
                continue
            yield GalleryImage(key, source.path_of(key), image, boxes_key)
        except ImageError as error:
            yield SkippedItem(key, str(error).removeprefix(f"{source.root / source.path_of(key)}: "), size, mtime)


def prefetched(items: Iterable, depth: int) -> Iterator:
    """Yield ``items`` in order while a background thread produces up to ``depth`` ahead.

    Decoding (Pillow releases the GIL) then overlaps with the models. An exception raised while
    producing is raised here, at the item where it happened.
    """
    queue: Queue = Queue(maxsize=max(1, depth))
    finished = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((item, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((finished, None))
        except BaseException as error:  # handed to the consumer
            queue.put((finished, error))

    thread = threading.Thread(target=produce, name="retrieval-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if item is finished:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
