"""A consistent, read-only view of an index, loaded into memory.

Everything a query needs (the vector store, every object's box, label, score and
item) is read from the active store inside one SQLite read transaction, at
one generation, so a snapshot never mixes two states of an index being written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StoreError
from .layout import active_store, read_pointer
from .manifest import Manifest
from .metadata import read_generation
from .search_space import SearchSpace, load_space, split_description
from .store import read_store
from .stores import VectorStore, VectorsMissing

LOAD_ATTEMPTS = 5


@dataclass(frozen=True)
class IndexSnapshot:
    """An index as of one commit.

    Attributes:
        directory: the index folder.
        store: the store folder inside it that was read.
        generation: the commit that was read.
        manifest: its manifest.
        vectors: the vector store (ids are object ids): the embedder's vectors, as stored.
        space: what queries search: those vectors, or vectors derived from them (whitening, DBA), and the
            whitening a query goes through first (``search_space.py``).
        object_ids: ``(M,)`` int64, sorted.
        object_image: ``(M,)`` int64 item row id of each object.
        boxes: ``(M, 4)`` float32, original pixels.
        labels: ``M`` labels (``None`` where there is none).
        scores: ``(M,)`` float32 detection scores (NaN where not detected).
        image_paths: item row id → the path of its file, relative to the gallery root, for every indexed item
            that holds objects (images and video frames; a frame's file is its video).
        item_keys: item row id → the item's key, for the same items (a folder's image: its path; a frame:
            ``<video path>#t=<seconds>``).
        frames: item row id → ``FrameRef`` for each indexed video frame.
        videos: video row id → the video's path, for each indexed video.
        object_video: ``(M,)`` int64 video id of each object's frame (-1 for objects of images): the video's
            row id, or below -1 for a video still being indexed.
        object_position: ``(M,)`` int64 position of each object's frame among its video's indexed frames in
            time order (0 = the first; -1 for objects of images): consecutive frames differ by 1.
        skipped: ``(key, reason)`` for every skipped item.
        incomplete: ``(video path, note)`` for every video indexed only up to where it broke off.
    """

    directory: Path
    store: Path
    generation: int
    manifest: Manifest
    vectors: VectorStore
    space: SearchSpace
    object_ids: np.ndarray
    object_image: np.ndarray
    boxes: np.ndarray
    labels: list
    scores: np.ndarray
    image_paths: dict[int, str]
    item_keys: dict[int, str]
    skipped: list[tuple[str, str]]
    frames: dict[int, FrameRef] = field(default_factory=dict)
    videos: dict[int, str] = field(default_factory=dict)
    object_video: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    object_position: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    incomplete: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "IndexSnapshot":
        """Load the last committed state of index ``directory`` and check that vectors and metadata agree."""
        directory = Path(directory)
        for attempt in range(LOAD_ATTEMPTS):
            store = active_store(directory)
            try:
                return cls._load_store(directory, store)
            except VectorsMissing:
                # A commit removed the vectors file of the generation just read: read again.
                if attempt == LOAD_ATTEMPTS - 1:
                    raise
            except StoreError:
                # A rebuild may have replaced and removed this store while we read it: read HEAD again.
                if attempt == LOAD_ATTEMPTS - 1 or read_pointer(directory) == store.name:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _load_store(cls, directory: Path, store: Path) -> "IndexSnapshot":
        manifest, generation, vectors, rows, items = read_store(store)
        object_image = np.array([r[1] for r in rows], dtype=np.int64)
        held = [row for row in items if row[3] == "indexed" and row[5] != "video"]
        videos = {row[0]: row[2] for row in items if row[3] == "indexed" and row[5] == "video"}
        frames = _frame_refs(items, videos)
        return cls(
            directory=directory,
            store=store,
            generation=generation,
            manifest=manifest,
            vectors=vectors,
            space=load_space(store, generation, split_description(manifest.vectors)[1], manifest.settings, vectors),
            object_ids=np.array([r[0] for r in rows], dtype=np.int64),
            object_image=object_image,
            boxes=np.array([r[2:6] for r in rows], dtype=np.float32).reshape(-1, 4),
            labels=[r[6] for r in rows],
            scores=np.array([np.nan if r[7] is None else r[7] for r in rows], dtype=np.float32),
            image_paths={row[0]: row[2] for row in held},
            item_keys={row[0]: row[1] for row in held},
            skipped=[(row[1], row[4]) for row in items if row[3] == "skipped"],
            frames=frames,
            videos=videos,
            object_video=np.array([frames[i].video_id if i in frames else -1 for i in object_image], dtype=np.int64),
            object_position=np.array([frames[i].position if i in frames else -1 for i in object_image], np.int64),
            incomplete=[(row[2], row[4]) for row in items if row[5] == "video" and row[3] == "indexed" and row[4]],
        )

    @property
    def version(self) -> tuple[str, int]:
        """``(store folder name, generation)``: what ``committed_version`` said when this was read."""
        return self.store.name, self.generation

    @property
    def gallery_root(self) -> Path:
        return Path(self.manifest.gallery_root)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row positions (into ``boxes``, ``labels``, ...) of object ``ids``."""
        return np.searchsorted(self.object_ids, ids)

    def absolute_path(self, image_id: int) -> Path:
        return self.gallery_root / self.image_paths[int(image_id)]


@dataclass(frozen=True)
class FrameRef:
    """Where a frame item is in its video: the video's path (relative to the gallery) and row id, the frame's
    number in the video (0 = the first decoded), its time in seconds, and its position among the video's
    indexed frames in time order."""

    video: str
    video_id: int
    number: int
    time: float
    position: int


def _frame_refs(items: list[tuple], videos: dict[int, str]) -> dict[int, FrameRef]:
    """``FrameRef`` of each indexed frame among item rows ``(id, key, path, status, error, kind, frame, time)``
    (``videos``: indexed video row id → path). The frames of a video still being indexed (no row of its own
    yet) get a negative video id below -1 of their own."""
    video_ids = {path: video_id for video_id, path in videos.items()}
    by_path: dict[str, list[tuple]] = {}
    for row in items:
        if row[5] == "frame" and row[3] == "indexed":
            by_path.setdefault(row[2], []).append(row)
    refs = {}
    for path, rows in by_path.items():
        rows.sort(key=lambda r: r[7])
        video_id = video_ids.get(path, -2 - min(r[0] for r in rows))
        for position, row in enumerate(rows):
            refs[row[0]] = FrameRef(path, video_id, int(row[6]), float(row[7]), position)
    return refs


def committed_version(directory: str | os.PathLike) -> tuple[str, int]:
    """``(active store folder name, its committed generation)`` of index ``directory``: cheap to ask, and
    different from a loaded snapshot's ``version`` exactly when a newer state has been committed."""
    store = active_store(Path(directory))
    return store.name, read_generation(store)
