"""Many queries at once: each a box in an image (or in a frame of a video), embedded in batches, each
image read once.

``embedded_batches`` turns a list of ``Query`` into, batch after batch, each query's unit vector or the
``RetrievalError`` that stopped it (an unreadable image, a bad box, a video without a time), so one bad
query never stops the others. Images (``load_query_image``) are read on worker threads one batch ahead of
the embedding and kept only until the last query that uses them.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..boxes import validate_box, whole_image_box
from ..errors import BoxError, ImageError, RetrievalError
from ..images import LoadedImage, load_image, stat_file
from ..validation import check_float
from ..videos import VideoError, VideoFile, is_video_name

QUERY_BATCH = 32
"""Queries embedded per ``embed`` call and searched per store search."""

READERS = 4
"""Threads reading (decoding) the next batch's images while the current batch is embedded."""


@dataclass(frozen=True)
class Query:
    """One query: the ``box`` (``x1, y1, x2, y2`` in the image's original pixels after EXIF orientation;
    ``None`` = the whole image) in ``image`` (a file path or a ``LoadedImage``).

    ``time`` (seconds) picks the frame when ``image`` is a video file (``videos.is_video_name``), and is
    required there; a still image with a time is refused.
    """

    image: LoadedImage | str | os.PathLike
    box: Sequence[float] | None = None
    time: float | None = None


def load_query_image(image: LoadedImage | str | os.PathLike, time: float | None = None) -> LoadedImage:
    """The picture a query looks in: ``image`` itself (loaded, or an image file read with ``load_image``), or
    for a video file the frame at ``time`` seconds (``VideoFile.frame_at``: the nearest frame; its ``sha256``
    is that of its RGB pixels). One-line errors: a time on a still image or a negative one, a video without a
    time (``VideoError``), a time past the video's end, a file that cannot be read."""
    if isinstance(image, LoadedImage) or not is_video_name(os.fspath(image)):
        if time is not None:
            raise ImageError(
                f"{_name(image)}: a time ({time:g} s) picks a frame of a video, but this is a still image; "
                "leave the time out"
            )
        return image if isinstance(image, LoadedImage) else load_image(image)
    if time is None:
        raise VideoError(f"{os.fspath(image)} is a video: give --time SECONDS to pick the frame")
    check_float("--time", time, low=0)
    info = stat_file(image)
    with VideoFile(image) as video:
        frame = video.frame_at(time)
    rgb = np.ascontiguousarray(frame.rgb)
    return LoadedImage(rgb, hashlib.sha256(rgb).hexdigest(), info.st_size, info.st_mtime_ns)


def query_boxes(image: LoadedImage, box: Sequence[float] | None) -> np.ndarray:
    """The ``(1, 4)`` float32 box of a query in ``image`` (original pixels); ``BoxError`` when it is no box there."""
    if box is None:
        return whole_image_box(image.width, image.height)
    return np.array([validate_box(box, image.width, image.height)], dtype=np.float32)


def embedded_batches(
    embedder, queries: Sequence[Query], batch_size: int = QUERY_BATCH
) -> Iterator[list[np.ndarray | RetrievalError]]:
    """Embed ``queries`` in order, ``batch_size`` at a time.

    Yields, per batch, one entry per query: its ``(D,)`` float32 unit vector, or the ``RetrievalError`` that
    query alone raised. A batch's images go to one ``embedder.embed(images, boxes)`` call, each distinct
    image once with the ``(N, 4)`` boxes of all its queries in that batch.
    """
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="query-images") as pool:
        images = _Images(queries, pool)
        batches = [range(start, min(start + batch_size, len(queries))) for start in range(0, len(queries), batch_size)]
        for number, positions in enumerate(batches):
            for ahead in batches[number : number + 2]:  # this batch's images (first time only), the next one's
                images.request(ahead)
            yield _embed_batch(embedder, [_prepared(images, queries[p], p) for p in positions])


def _prepared(images: "_Images", query: Query, position: int) -> tuple[LoadedImage, np.ndarray] | RetrievalError:
    """``(image, (1, 4) box)`` of one query, or the error that stops it (naming the image)."""
    try:
        image = images.take(position)
        try:
            return image, query_boxes(image, query.box)
        except BoxError as error:
            raise BoxError(f"{_name(query.image)}: {error}") from None
    except RetrievalError as error:
        return error


def _embed_batch(
    embedder, prepared: list[tuple[LoadedImage, np.ndarray] | RetrievalError]
) -> list[np.ndarray | RetrievalError]:
    """One ``embed`` call for a batch: each distinct image once, with its queries' boxes stacked."""
    rows: dict[int, list[int]] = {}  # id(image) → positions in the batch, in order
    images: list[LoadedImage] = []
    for position, entry in enumerate(prepared):
        if isinstance(entry, RetrievalError):
            continue
        if id(entry[0]) not in rows:
            rows[id(entry[0])] = []
            images.append(entry[0])
        rows[id(entry[0])].append(position)
    if not images:
        return list(prepared)
    boxes = [np.concatenate([prepared[p][1] for p in rows[id(image)]]) for image in images]
    answers: list[np.ndarray | RetrievalError] = list(prepared)
    for image, vectors in zip(images, embedder.embed([image.rgb for image in images], boxes)):
        for position, vector in zip(rows[id(image)], vectors):
            answers[position] = vector
    return answers


class _Images:
    """Reads each distinct query image once on ``pool``'s threads, when asked ahead of use, and forgets it
    after the last query that uses it (so memory holds about two batches of images)."""

    def __init__(self, queries: Sequence[Query], pool: ThreadPoolExecutor) -> None:
        self.queries = queries
        self.pool = pool
        self.keys = [_key(query) for query in queries]
        self.last_use = {key: position for position, key in enumerate(self.keys) if key is not None}
        self.reading: dict[tuple, Future] = {}

    def request(self, positions: range) -> None:
        """Start reading the images of the queries at ``positions`` (those not read or being read)."""
        for position in positions:
            key = self.keys[position]
            if key is not None and key not in self.reading:
                self.reading[key] = self.pool.submit(load_query_image, self.queries[position].image, key[1])

    def take(self, position: int) -> LoadedImage:
        """The image of the query at ``position`` (requested before); ``ImageError`` when it cannot be read
        (or a time does not fit it)."""
        query, key = self.queries[position], self.keys[position]
        if key is None:
            return load_query_image(query.image, query.time)  # already loaded by the caller
        future = self.reading.pop(key) if self.last_use[key] == position else self.reading[key]
        return future.result()


def _key(query: Query) -> tuple[str, float | None] | None:
    """What makes two queries' pictures one: the file's absolute path and the time (``None`` for a loaded image)."""
    if isinstance(query.image, LoadedImage):
        return None
    return os.path.abspath(os.fspath(query.image)), query.time


def _name(image: LoadedImage | str | os.PathLike) -> str:
    return "the query image" if isinstance(image, LoadedImage) else os.fspath(image)
