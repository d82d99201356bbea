"""A consistent, read-only view of an index, loaded into memory.

Everything a query needs (the vector store, every object's box, label, score and
item) is read from the active store inside one SQLite read transaction, at
one generation, so a snapshot never mixes two states of an index being written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
        image_paths: item row id → the path of its file, relative to the gallery root (indexed items only).
        item_keys: item row id → the item's key (indexed items only; a folder's: the same path).
        skipped: ``(key, reason)`` for every skipped item.
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
        return cls(
            directory=directory,
            store=store,
            generation=generation,
            manifest=manifest,
            vectors=vectors,
            space=load_space(store, generation, split_description(manifest.vectors)[1], manifest.settings, vectors),
            object_ids=np.array([r[0] for r in rows], dtype=np.int64),
            object_image=np.array([r[1] for r in rows], dtype=np.int64),
            boxes=np.array([r[2:6] for r in rows], dtype=np.float32).reshape(-1, 4),
            labels=[r[6] for r in rows],
            scores=np.array([np.nan if r[7] is None else r[7] for r in rows], dtype=np.float32),
            image_paths={i: path for i, _, path, status, _ in items if status == "indexed"},
            item_keys={i: key for i, key, _, status, _ in items if status == "indexed"},
            skipped=[(key, error) for _, key, _, status, error in items if status == "skipped"],
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


def committed_version(directory: str | os.PathLike) -> tuple[str, int]:
    """``(active store folder name, its committed generation)`` of index ``directory``: cheap to ask, and
    different from a loaded snapshot's ``version`` exactly when a newer state has been committed."""
    store = active_store(Path(directory))
    return store.name, read_generation(store)
