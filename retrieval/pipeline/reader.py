"""Reader: gallery files → decoded images, in batches; unchanged files are passed over, unreadable ones set aside.

A file whose size and mtime match what the index stored is not read at all. A
file whose bytes hash to the stored sha256 is not decoded (only its size and
mtime are refreshed). Everything else is read, hashed and decoded.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Callable, Iterable, Iterator

from ..errors import ImageError
from ..sources.images import DEFAULT_MAX_PIXELS, LoadedImage, decode_image_bytes, read_file, stat_file
from ..index.store import ImageState


@dataclass(frozen=True)
class GalleryImage:
    """A decoded gallery image, its path relative to the gallery root, and its object-source key."""

    rel_path: str
    image: LoadedImage
    source_key: str | None = None


@dataclass(frozen=True)
class UnchangedFile:
    """A file already indexed with the same content; ``file_size``/``mtime_ns`` are set when they changed."""

    rel_path: str
    file_size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A gallery file that was not indexed, and why (one line naming the problem)."""

    rel_path: str
    reason: str
    file_size: int | None = None
    mtime_ns: int | None = None


def read_images(
    root: Path,
    rel_paths: Iterable[str],
    known: dict[str, ImageState] | None = None,
    source_key: Callable[[str], str | None] = lambda rel_path: None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[GalleryImage | UnchangedFile | SkippedFile]:
    """Classify and, where needed, decode each file under ``root`` in order.

    Args:
        known: what the index already holds, by relative path.
        source_key: the key of an image's given boxes (annotations); an image whose key changed is re-indexed.
    """
    known = known or {}
    for rel_path in rel_paths:
        path = root / rel_path
        previous = known.get(rel_path)
        key = source_key(rel_path)
        same_boxes = previous is not None and previous.status == "indexed" and previous.source_key == key
        size = mtime = None
        try:
            info = stat_file(path)
            size, mtime = info.st_size, info.st_mtime_ns
            if same_boxes and (previous.file_size, previous.mtime_ns) == (size, mtime):
                yield UnchangedFile(rel_path)
                continue
            data = read_file(path)
            digest = hashlib.sha256(data).hexdigest()
            if same_boxes and previous.sha256 == digest:
                yield UnchangedFile(rel_path, size, mtime)
                continue
            rgb = decode_image_bytes(data, name=str(path), max_pixels=max_pixels)
            yield GalleryImage(rel_path, LoadedImage(rgb, digest, size, mtime), key)
        except ImageError as error:
            yield SkippedFile(rel_path, str(error).removeprefix(f"{path}: "), size, mtime)


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
