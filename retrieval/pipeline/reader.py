"""Reader: a gallery source's items → decoded images, in order; unchanged items passed over, unreadable ones set aside.

An item whose fingerprint (file size and mtime) matches what the index stored is not read at all. An
item whose content hashes to the stored sha256 is not decoded (only its fingerprint is refreshed).
Everything else is read, hashed and decoded by the source, here or, for a distributor that reads items
itself (Ray workers), there: the reader then hands it an ``UnreadImage`` and ``read_unread`` runs where the
mapper runs. A video is expanded into its sampled frames (``frames.py``), each a ``GalleryImage`` with its
``frame``, then a ``VideoDone``; frames are always decoded here (a video is read sequentially).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from queue import Full, Queue
from typing import Callable, Iterable, Iterator

from ..errors import ImageError
from ..images import DEFAULT_MAX_PIXELS, LoadedImage
from ..index.metadata import ItemState
from ..index.store import VideoRecord
from ..sources import GallerySource, holds_videos
from ..sources.video import VideoSampling


@dataclass(frozen=True)
class GalleryImage:
    """A decoded item: its key, the file it comes from (relative to the gallery root), its boxes' key, and
    for a video frame ``(its number in the video, its time in seconds)`` (``image`` then carries the video's
    fingerprint)."""

    key: str
    path: str
    image: LoadedImage
    source_key: str | None = None
    frame: tuple[int, float] | None = None

    @property
    def completes_file(self) -> bool:
        """True when this item is a whole gallery file (for progress: a frame is part of one)."""
        return self.frame is None


@dataclass(frozen=True)
class UnchangedItem:
    """An item already indexed with the same content; ``file_size``/``mtime_ns`` are set when they changed.

    ``whole_file``: the item is a video standing for all its frames; ``frame``: the item is one frame of a
    video being indexed (kept from a run that stopped midway)."""

    key: str
    file_size: int | None = None
    mtime_ns: int | None = None
    whole_file: bool = False
    frame: bool = False

    @property
    def completes_file(self) -> bool:
        return not self.frame


@dataclass(frozen=True)
class UnreadImage:
    """A still item to read and decode (new or changed) where the mapper runs: ``read_unread`` turns it into
    a ``GalleryImage``, an ``UnchangedItem`` (its content hashes to ``unchanged_sha256``) or a ``SkippedItem``.
    ``file_size``/``mtime_ns``: its fingerprint when the reader looked."""

    key: str
    path: str
    source_key: str | None
    unchanged_sha256: str | None
    file_size: int
    mtime_ns: int
    completes_file = True


@dataclass(frozen=True)
class SkippedItem:
    """An item (or a file or folder) that was not indexed, and why (one line naming the problem)."""

    key: str
    reason: str
    file_size: int | None = None
    mtime_ns: int | None = None
    kind: str = "image"
    completes_file = True


@dataclass(frozen=True)
class VideoDone:
    """A video read to its end (or to where it broke off, ``record.note``): its frames came before."""

    key: str
    record: VideoRecord
    completes_file = True


@dataclass(frozen=True)
class ForgetFile:
    """The stored items of the file ``path`` are stale (it changed, or is sampled otherwise): remove all
    but those keyed in ``keep`` (frames a stopped run already indexed from this very content)."""

    path: str
    keep: frozenset[str] = frozenset()
    completes_file = False


def read_items(
    source: GallerySource,
    keys: Iterable[str],
    known: dict[str, ItemState] | None = None,
    source_key: Callable[[str], str | None] = lambda key: None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    sampling: VideoSampling | None = VideoSampling(),
    decode: bool = True,
) -> Iterator[GalleryImage | UnreadImage | UnchangedItem | SkippedItem | VideoDone | ForgetFile]:
    """Classify and, where needed, decode each of ``source``'s items ``keys`` in order.

    Args:
        known: what the index already holds, by key.
        source_key: the key of an item's given boxes (annotations); an item whose key changed is re-indexed.
        sampling: which frames of a video become items; ``None``: videos are not indexed (skipped, with why).
        decode: read and decode still images here; ``False``: yield an ``UnreadImage`` for each instead.
    """
    from .frames import read_video

    known = known or {}
    videos = holds_videos(source)
    by_file: dict[str, dict[str, ItemState]] = {}
    if videos:
        for item_key, state in known.items():
            by_file.setdefault(state.path, {})[item_key] = state
    for key in keys:
        if videos and source.is_video(key):
            yield from read_video(source, key, by_file.get(source.path_of(key), {}), sampling, max_pixels)
        else:
            unread = _classify_image(source, key, known.get(key), source_key(key))
            yield read_unread(source, unread, max_pixels) if decode and isinstance(unread, UnreadImage) else unread


def _classify_image(
    source: GallerySource, key: str, previous: ItemState | None, boxes_key: str | None
) -> UnreadImage | UnchangedItem | SkippedItem:
    """One still item: passed over when its fingerprint is unchanged, else to be read (or skipped, with why)."""
    same_boxes = previous is not None and previous.status == "indexed" and previous.source_key == boxes_key
    try:
        size, mtime = source.fingerprint(key)
    except ImageError as error:
        return SkippedItem(key, _reason(source, key, error))
    if same_boxes and (previous.file_size, previous.mtime_ns) == (size, mtime):
        return UnchangedItem(key)
    return UnreadImage(key, source.path_of(key), boxes_key, previous.sha256 if same_boxes else None, size, mtime)


def read_unread(
    source: GallerySource, item: UnreadImage, max_pixels: int
) -> GalleryImage | UnchangedItem | SkippedItem:
    """Read, hash and decode ``item``: its pixels, or unchanged (same content), or skipped (with why)."""
    try:
        image = source.read(item.key, max_pixels, item.unchanged_sha256)
    except ImageError as error:
        return SkippedItem(item.key, _reason(source, item.key, error), item.file_size, item.mtime_ns)
    if image is None:
        return UnchangedItem(item.key, item.file_size, item.mtime_ns)
    return GalleryImage(item.key, item.path, image, item.source_key)


def _reason(source: GallerySource, key: str, error: ImageError) -> str:
    """The error's message without the file's path (the key names it)."""
    return str(error).removeprefix(f"{source.root / source.path_of(key)}: ")


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
