"""An indexed item's picture, whatever its kind: an image file's pixels (EXIF orientation applied) or a video
frame's, decoded from its video at the frame's time (exact by timestamp, ``VideoFile.frame_at``).

Decoding a frame seeks to the keyframe before it and decodes forward, so recent frames are cached, by path,
modification time, size and time (a changed file is decoded again); callers get their own copy. Pictures are
``(H, W, 3)`` uint8 RGB; the item's boxes are in their pixels.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..images import DEFAULT_MAX_PIXELS, load_image, oriented_size, stat_file
from ..videos import VideoFile
from .rows import ItemRow
from .snapshot import IndexSnapshot

FRAME_CACHE = 32  # decoded frames kept (a 1080p frame is 6 MB)


def item_rgb(snapshot: IndexSnapshot, item_id: int) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB picture of indexed item ``item_id`` (an image, or a video's frame);
    ``ImageError`` (``VideoError`` for a frame) when its file no longer reads."""
    item = indexed_item(snapshot, item_id)
    return picture_rgb(snapshot.absolute_path(item), _time(item))


def item_size(snapshot: IndexSnapshot, item_id: int) -> tuple[int, int]:
    """``(width, height)`` of item ``item_id``'s picture (a frame's: its video's frames, rotation applied)."""
    item = indexed_item(snapshot, item_id)
    return picture_size(snapshot.absolute_path(item), video=item.frame is not None)


def item_time(snapshot: IndexSnapshot, item_id: int) -> float | None:
    """The time in its video (seconds) of a frame item; ``None`` for an image."""
    return _time(indexed_item(snapshot, item_id))


def indexed_item(snapshot: IndexSnapshot, item_id: int) -> ItemRow:
    """The indexed image or frame ``item_id``; ``KeyError`` when there is none."""
    item = snapshot.item(item_id)
    if item is None:
        raise KeyError(item_id)
    return item


def _time(item: ItemRow) -> float | None:
    return None if item.frame is None else item.frame.time


def picture_rgb(path: str | os.PathLike, time: float | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of the image file at ``path`` (``time`` ``None``) or of the frame at ``time``
    seconds of the video file at ``path``."""
    if time is None:
        return load_image(path).rgb
    info = stat_file(path)
    return _frame(str(path), info.st_mtime_ns, info.st_size, float(time)).copy()


def picture_size(path: str | os.PathLike, video: bool = False) -> tuple[int, int]:
    """``(width, height)`` of the image file at ``path`` as displayed (from its header), or of the frames of
    the video file at ``path`` (its first frame decoded once, rotation applied)."""
    info = stat_file(path)
    return _size(str(path), info.st_mtime_ns, info.st_size, video)


@lru_cache(maxsize=FRAME_CACHE)
def _frame(path: str, mtime_ns: int, size: int, time: float) -> np.ndarray:
    with VideoFile(path, DEFAULT_MAX_PIXELS) as video:
        rgb = video.frame_at(time).rgb
    rgb.setflags(write=False)
    return rgb


@lru_cache(maxsize=65536)
def _size(path: str, mtime_ns: int, size: int, video: bool) -> tuple[int, int]:
    if not video:
        return oriented_size(path)
    height, width = _frame(path, mtime_ns, size, 0.0).shape[:2]
    return width, height
