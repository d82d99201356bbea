"""A consistent, read-only view of an index: its vectors loaded, its rows looked up by id when needed.

``IndexSnapshot.load`` reads the active store's manifest, vectors and search space, and from the metadata
only the generation, counts and next object id, inside one SQLite read transaction at one generation; it
reads no item or object row, so it takes the time and memory of the vectors alone.

A query looks up the rows of its candidates only (``objects``, ``items``), each lookup in a short read
transaction of its own on the store's newest committed state, through one read-only connection the snapshot
opens at load and keeps (so it still reads a store folder that a rebuild replaced and removed meanwhile: the
open files outlive their names). No transaction is held for the snapshot's life (that would keep SQLite's
WAL from being checkpointed while a server runs), so nothing needs closing: the connection closes when the
snapshot is dropped.

This is consistent with the snapshot's vectors because object ids are never reused and an object's row never
changes once written: an id the snapshot's vectors hold either still has the row it had, or has none because
a later commit removed it, and such a candidate is dropped. An item keeps its id, key, path and kind for
life; what a later commit may change is which frames of a video are indexed (so a frame's position and its
video's id are those of the newest state), and item listings (``listing``) show the newest state's items,
with their objects of the snapshot's generation or earlier (ids below ``id_limit``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import StoreError
from . import rows as lookup
from .layout import active_store, read_pointer
from .manifest import Manifest
from .metadata import connect, read_generation, read_problems
from .rows import ItemRow
from .search_space import SearchSpace, load_space, split_description
from .store import read_store
from .stores import VectorsMissing, VectorStore

LOAD_ATTEMPTS = 5
EXPORT_CHUNK = 100_000  # object rows read at a time by ``chunks``


@dataclass(frozen=True)
class ObjectRows:
    """Rows of ``N`` objects, sorted by id.

    Attributes:
        ids: ``(N,)`` int64 object ids.
        item: ``(N,)`` int64 item row id of each object's image or frame.
        boxes: ``(N, 4)`` float32, original pixels.
        labels: ``N`` labels (``None`` where there is none).
        scores: ``(N,)`` float32 detection scores (NaN where not detected).
        video: ``(N,)`` int64 video id of each object's frame (-1 for objects of images): the video's row id,
            or below -1 for a video still being indexed.
        position: ``(N,)`` int64 position of each object's frame among its video's indexed frames in time
            order (0 = the first; -1 for objects of images): consecutive frames differ by 1.
        items: item id → ``ItemRow`` of each of those items.
    """

    ids: np.ndarray
    item: np.ndarray
    boxes: np.ndarray
    labels: list
    scores: np.ndarray
    video: np.ndarray
    position: np.ndarray
    items: dict[int, ItemRow]

    @classmethod
    def of(cls, rows: list[tuple], items: dict[int, ItemRow]) -> "ObjectRows":
        """From ``rows.object_rows``' tuples (sorted by id) and their items."""
        frames = [items[row[1]].frame if row[1] in items else None for row in rows]
        return cls(
            ids=np.array([row[0] for row in rows], dtype=np.int64),
            item=np.array([row[1] for row in rows], dtype=np.int64),
            boxes=np.array([row[2:6] for row in rows], dtype=np.float32).reshape(-1, 4),
            labels=[row[6] for row in rows],
            scores=np.array([np.nan if row[7] is None else row[7] for row in rows], dtype=np.float32),
            video=np.array([-1 if f is None else f.video_id for f in frames], dtype=np.int64),
            position=np.array([-1 if f is None else f.position for f in frames], dtype=np.int64),
            items=items,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, ids: np.ndarray) -> np.ndarray:
        """``(K,)`` int64 row of each of ``ids`` (``(K,)`` int64), -1 for an id not among these rows."""
        where = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        found = (where < len(self.ids)) & (self.ids[where] == ids) if len(self.ids) else np.zeros(len(ids), bool)
        return np.where(found, where, -1)


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
        counts: ``{"images", "videos", "frames", "objects", "skipped"}`` at that commit
            (``metadata.count_items``).
        id_limit: every object of that commit has an id below this one.
        schema: the metadata's schema version.
        metadata: the read-only connection rows are looked up through, and the lock that serialises its use.
    """

    directory: Path
    store: Path
    generation: int
    manifest: Manifest
    vectors: VectorStore
    space: SearchSpace
    counts: dict[str, int]
    id_limit: int
    schema: int
    metadata: tuple[sqlite3.Connection, threading.Lock] = field(repr=False, compare=False)

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
        db = connect(store, read_only=True, threads=True)  # read through it: SQLite opens its files at a first read
        try:
            manifest, vectors, committed = read_store(store, db)
        except BaseException:
            db.close()
            raise
        search = split_description(manifest.vectors)[1]
        snapshot = cls(
            directory=directory,
            store=store,
            generation=committed.generation,
            manifest=manifest,
            vectors=vectors,
            space=load_space(store, committed.generation, search, manifest.settings, vectors),
            counts=committed.counts,
            id_limit=committed.next_object_id,
            schema=committed.schema,
            metadata=(db, threading.Lock()),
        )
        weakref.finalize(snapshot, db.close)  # a connection sits in a reference cycle: close it with the snapshot
        return snapshot

    @property
    def version(self) -> tuple[str, int]:
        """``(store folder name, generation)``: what ``committed_version`` said when this was read."""
        return self.store.name, self.generation

    @property
    def gallery_root(self) -> Path:
        return Path(self.manifest.gallery_root)

    @property
    def has_frames(self) -> bool:
        """Whether the index held video frames at this commit."""
        return self.counts["frames"] > 0

    @property
    def held_items(self) -> int:
        """How many indexed items can hold objects (images and video frames) at this commit."""
        return self.counts["images"] + self.counts["frames"]

    def absolute_path(self, item: ItemRow) -> Path:
        """The file of ``item`` (a frame's: its video)."""
        return self.gallery_root / item.path

    def objects(self, ids: np.ndarray) -> ObjectRows:
        """The rows of the objects ``ids`` (``(N,)`` int64, any order, repeats allowed), sorted by id; an id with
        no row (removed by a commit after this snapshot was loaded) is left out."""
        with self._reading() as db:
            rows = lookup.object_rows(db, self.schema, np.asarray(ids, dtype=np.int64))
            return ObjectRows.of(rows, lookup.item_rows(db, self.schema, {row[1] for row in rows}))

    def items(self, ids) -> dict[int, ItemRow]:
        """The indexed images and frames among item ids ``ids``, by id (any other id is left out)."""
        with self._reading() as db:
            return lookup.item_rows(db, self.schema, [int(i) for i in ids])

    def item(self, item_id: int) -> ItemRow | None:
        """The indexed image or frame ``item_id``, or ``None`` where there is none."""
        return self.items([item_id]).get(int(item_id))

    def item_objects(self, item_ids) -> ObjectRows:
        """The rows of the objects of items ``item_ids`` (this snapshot's or earlier ones), sorted by id."""
        with self._reading() as db:
            rows = lookup.objects_of_items(db, self.schema, [int(i) for i in item_ids], self.id_limit)
            return ObjectRows.of(rows, lookup.item_rows(db, self.schema, {row[1] for row in rows}))

    def listing(self, offset: int, limit: int, by_time: bool = False) -> list[ItemRow]:
        """``limit`` indexed images and frames from ``offset``, sorted by path then key (``by_time``: by path,
        a frame's time, then key)."""
        with self._reading() as db:
            ids = lookup.listed_items(db, self.schema, offset, limit, by_time)
            found = lookup.item_rows(db, self.schema, ids)
        return [found[i] for i in ids if i in found]

    def chunks(self, size: int = EXPORT_CHUNK) -> Iterator[ObjectRows]:
        """Every object of this snapshot, in id order, ``size`` rows at a time (one lookup per chunk)."""
        start = 0
        while True:
            with self._reading() as db:
                rows = lookup.objects_from(db, self.schema, start, self.id_limit, size)
                if not rows:
                    return
                found = ObjectRows.of(rows, lookup.item_rows(db, self.schema, {row[1] for row in rows}))
            yield found
            start = int(found.ids[-1]) + 1

    def named_paths(self, names) -> tuple[set[str], set[str]]:
        """``(indexed, skipped)``: those of ``names`` (paths relative to the gallery) that are an indexed image's
        or frame's path, and those that are a skipped item's key."""
        with self._reading() as db:
            return lookup.named_paths(db, self.schema, names)

    def file_count(self) -> int:
        """How many gallery files the indexed images and frames come from (a video counts once)."""
        with self._reading() as db:
            return lookup.file_count(db, self.schema)

    def problems(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """``(skipped, incomplete)``: ``(key, reason)`` of each skipped item and ``(video path, note)`` of each
        video indexed only up to where it broke off (``metadata.read_problems``), read now."""
        with self._reading() as db:
            return read_problems(db)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The snapshot's connection, held by this thread, inside one read transaction; SQLite errors become
        ``StoreError``."""
        db, lock = self.metadata
        with lock:
            try:
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    db.execute("ROLLBACK")  # it only read
            except sqlite3.Error as error:
                raise StoreError(f"{self.store} cannot be read ({error}); the index is damaged") from None


def committed_version(directory: str | os.PathLike) -> tuple[str, int]:
    """``(active store folder name, its committed generation)`` of index ``directory``: cheap to ask, and
    different from a loaded snapshot's ``version`` exactly when a newer state has been committed."""
    store = active_store(Path(directory))
    return store.name, read_generation(store)
