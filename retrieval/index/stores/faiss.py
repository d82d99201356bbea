"""faiss: FAISS indexes in segments, exact (flat) up to 50,000 vectors then inverted lists (``--index-type``).

Each save writes the vectors added since the last one as a new segment and the ids removed since as
deletions, never the whole store (files and listing: ``index/segments.py``); readers memory-map the
segments and search them as one index (``index/segment_search.py``). Segments of one size tier are merged in
a background thread while indexing goes on, and all of them by ``compact`` (``index/segment_merge.py``).
The index kind, its factory string, search parameters and training count (``faiss_kinds.IndexPlan``) are the
store's description in the manifest; the kind follows the vector count (``faiss_kinds.plan_for``) and when it
changes (or trained kinds are trained again), a save writes every vector again as one segment.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ...errors import StoreError
from ..faiss_kinds import FLAT, IndexPlan, check_index_type, plan_for, remove_ids, set_search_params, trained_index
from ..faiss_kinds import ivf_of, vector_ids
from ..segment_merge import MergeJob, fresh_index, in_flight, merged_index
from ..segment_search import Deletions, SegmentSearch, reconstruct_from
from ..segments import Listing, legacy_path, listing_path, merge_choice, read_deleted, read_index, read_listing
from ..segments import write_deleted, write_index, write_listing
from . import StoreEntry, VectorsMissing

MAPPED_MIN_VECTORS = 100_000  # smaller segments are read into memory and merged at load
FILE_PATTERNS = ("vectors.*.json", "vectors.*.faiss", "segment.*.faiss", "trained.*.faiss", "deleted.*.npy")


@dataclass
class Segment:
    """One segment file (``name``) of ``count`` vectors, deleted ones included; ``index`` once read on its own
    (memory-mapped; ``None`` for small segments read merged with others)."""

    name: str
    count: int
    index: faiss.Index | None = None


class FaissStore:
    """The segments of one generation, plus the vectors added since (``pending``, in memory), minus deletions.

    ``trained`` is the empty trained index whose quantizer the segments share (``None`` for untrained kinds).
    """

    def __init__(self, plan: IndexPlan, index_type: str, listing: Listing, folder: Path | None,
                 trained: faiss.Index | None = None, deleted: np.ndarray | None = None) -> None:
        self.plan, self.index_type, self.dimension = plan, index_type, listing.dimension
        self.folder = folder  # where the segments are (``None`` until the first save of a new store)
        self.trained = trained
        self._trained_name = listing.trained
        self.segments = [Segment(name, count) for name, count in listing.segments]
        self.deletions = Deletions(np.zeros(0, np.int64) if deleted is None else deleted)
        self.deleted_name = listing.deleted
        self.next_number = listing.next_number
        self.rewrite = False  # write everything again at the next save (a legacy one-file index)
        self.pending: faiss.Index | None = None
        self._pending_ids: list[np.ndarray] = []
        self._read: list[faiss.Index] | None = None  # the segments as read (``_parts``)
        self._read_ids: list[np.ndarray] | None = None  # their sorted ids, once reconstruct needs them
        self._search: SegmentSearch | None = None  # how to search the parts, worked out at the first search
        self.merge: MergeJob | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        pending = self.pending.ntotal if self.pending is not None else 0
        return sum(segment.count for segment in self.segments) + pending - len(self.deletions.ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            if self.pending is None:
                self.pending = fresh_index(self._template(), self.plan, self.dimension)
            self.pending.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, np.int64))
            self._pending_ids.append(np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.unique(np.asarray(ids, np.int64))
        if not len(ids):
            return
        pending = np.isin(ids, np.concatenate(self._pending_ids)) if self._pending_ids else np.zeros(len(ids), bool)
        if pending.any():
            self.pending = remove_ids(self.pending, self.plan, ids[pending])
            self._pending_ids = [np.setdiff1d(np.concatenate(self._pending_ids), ids[pending])]
        if not pending.all():
            self.deletions = Deletions(np.union1d(self.deletions.ids, ids[~pending]))
            self.deleted_name = None  # written at the next save

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = self._parts()
        if not parts:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if self._search is None or self._search.parts != parts:
            self._search = SegmentSearch(parts, self.trained, self.plan)
        return self._search.search(queries, k, self.deletions.selector)

    def ids(self) -> np.ndarray:
        parts = [vector_ids(part) for part in self._parts()]
        stored = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return np.setdiff1d(stored, self.deletions.ids, assume_unique=True)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return np.zeros((0, self.dimension), np.float32)
        with self._lock:  # the first call gives inverted lists a direct map
            parts = self._parts()
            if self._read_ids is None:
                self._read_ids = [vector_ids(part) for part in self._read]
            part_ids = self._read_ids + ([vector_ids(self.pending)] if self.pending is not None else [])
            return reconstruct_from(parts, part_ids, ids, self.dimension)

    def describe(self) -> dict:
        return {"store": "faiss", **self.plan.to_dict(), "segments": len(self.segments)}

    def save(self, folder: Path, generation: int) -> None:
        folder = self.folder = Path(folder)
        self._take_merge(wait=False)
        plan = plan_for(self.index_type, len(self), self.dimension, self.plan)
        if plan != self.plan or self.rewrite:
            self._write_all(folder, plan)
        elif self.pending is not None and self.pending.ntotal:
            name = self._new_name("segment")
            write_index(folder / name, self.pending)
            self.segments.append(Segment(name, int(self.pending.ntotal)))
            self._read = self._read_ids = None
        self.pending, self._pending_ids = None, []
        if self.deleted_name is None and len(self.deletions.ids):
            self.deleted_name = f"deleted.{generation}.npy"
            write_deleted(folder / self.deleted_name, self.deletions.ids)
        write_listing(folder, generation, self.listing())
        self._start_merge(folder)

    def listing(self) -> Listing:
        """What the next listing records."""
        segments = tuple((segment.name, segment.count) for segment in self.segments)
        trained = self._trained_name if self.trained is not None else None
        deleted = self.deleted_name if len(self.deletions.ids) else None
        return Listing(segments, trained, deleted, self.next_number, self.dimension)

    def merge_waiting(self, wait: bool) -> bool:
        """True when a background merge has finished and waits for the next save (``wait``: let a running one
        finish first)."""
        return self.merge is not None and self.merge.result(wait) is not None

    def compact(self) -> tuple[int, int]:
        """Merge every segment into one, dropping deleted ids, for the next save; ``(segments merged, ids
        dropped)``; ``(0, 0)`` when there is one segment and nothing deleted."""
        self._take_merge(wait=True)
        if self.rewrite:  # a legacy index: the next save writes it again as one segment anyway
            return len(self.segments), 0
        if len(self.segments) <= 1 and not len(self.deletions.ids):
            return 0, 0
        names = [segment.name for segment in self.segments]
        index, dropped = merged_index(self.folder, names, self.trained, self.plan, self.dimension, self.deletions.ids)
        name = self._new_name("segment")
        write_index(self.folder / name, index)
        self._replace(names, Segment(name, int(index.ntotal)), dropped)
        return len(names), len(dropped)

    def _parts(self) -> list[faiss.Index]:
        """The segments' indexes, read the first time (``_read_segments``), then the pending one."""
        if self._read is None:
            self._read = self._read_segments()
        return self._read + ([self.pending] if self.pending is not None else [])

    def _read_segments(self) -> list[faiss.Index]:
        """Segments of ``MAPPED_MIN_VECTORS`` or more memory-mapped; the smaller ones (the recent commits) read
        and merged into one index in memory where the kind merges exactly (inverted lists, flat), so that a
        search reads a few parts however many commits there were (and inverted lists, one stacked index)."""
        mergeable = ivf_of(self.trained) is not None or self.plan.kind == "flat"
        small = [s for s in self.segments if s.index is None and s.count < MAPPED_MIN_VECTORS] if mergeable else []
        small = small if len(small) > 1 else []
        for segment in self.segments:
            if segment.index is None and segment not in small:
                segment.index = self._checked(segment.name, read_index, self.folder / segment.name, self.trained, True)
        parts = [segment.index for segment in self.segments if segment not in small]
        if small:
            names = [segment.name for segment in small]
            tail, _ = self._checked(names[0], merged_index, self.folder, names, self.trained, self.plan,
                                    self.dimension, np.zeros(0, np.int64))
            parts.append(tail)
        for part in parts:
            set_search_params(part, self.plan)
        return parts

    def _checked(self, name: str, read, *arguments):
        """``read(*arguments)``, a missing file a ``VectorsMissing``; the result's dimension checked."""
        try:
            result = read(*arguments)
        except FileNotFoundError as error:
            raise VectorsMissing(f"{error.args[0] if error.args else name} is missing: the index is damaged; "
                                 "rebuild it") from None
        index = result[0] if isinstance(result, tuple) else result
        if index.d != self.dimension:
            raise StoreError(f"{self.folder / name} holds vectors of dimension {index.d} "
                             f"but the store's are {self.dimension}; the index is damaged; rebuild it")
        return result

    def _write_all(self, folder: Path, plan: IndexPlan) -> None:
        """Write every vector again as one segment under ``plan`` (a new kind, or trained again)."""
        self._cancel_merge()
        ids = self.ids()
        vectors = self.reconstruct(ids)
        self.trained = trained_index(plan, self.dimension, vectors) if plan.trained_on else None
        if self.trained is not None:
            self._trained_name = self._new_name("trained")
            write_index(folder / self._trained_name, self.trained, shared_quantizer=False)
        index = fresh_index(self.trained, plan, self.dimension)
        if len(ids):
            index.add_with_ids(vectors, ids)
        name = self._new_name("segment")
        write_index(folder / name, index)
        self.plan, self.rewrite = plan, False
        self.segments = [Segment(name, len(ids))]
        self.deletions, self.deleted_name = Deletions(np.zeros(0, np.int64)), None
        self._read = self._read_ids = None

    def _template(self) -> faiss.Index | None:
        """The trained index new vectors are added to a copy of (a legacy index's own training, emptied)."""
        if self.trained is None and self.plan.trained_on and self.segments:
            self.trained = faiss.clone_index(self._parts()[0])
            self.trained.reset()
        return self.trained

    def _start_merge(self, folder: Path) -> None:
        if self.merge is not None:
            return
        chosen = merge_choice([segment.count for segment in self.segments])
        if chosen:
            names = [self.segments[position].name for position in chosen]
            job_args = (self.trained, self.plan, self.dimension, self.deletions.ids)
            self.merge = MergeJob(folder, names, self._new_name("segment"), *job_args)

    def _take_merge(self, wait: bool) -> None:
        """Put a finished merge's segment in place of its sources."""
        if self.merge is None:
            return
        merged = self.merge.result(wait)
        if merged is None and self.merge.running:
            return
        job, self.merge = self.merge, None
        if merged is not None:
            self._replace(list(merged.sources), Segment(merged.name, merged.count), merged.dropped)
            job.release(keep_file=True)

    def _replace(self, sources: list[str], merged: Segment, dropped: np.ndarray) -> None:
        first = min(position for position, segment in enumerate(self.segments) if segment.name in sources)
        kept = [segment for segment in self.segments if segment.name not in sources]
        self.segments = kept[:first] + [merged] + kept[first:]
        self._read = self._read_ids = None
        if len(dropped):
            self.deletions = Deletions(np.setdiff1d(self.deletions.ids, dropped, assume_unique=True))
            self.deleted_name = None

    def _cancel_merge(self) -> None:
        if self.merge is not None:
            self.merge.release(keep_file=False)
            self.merge = None

    def _new_name(self, kind: str) -> str:
        name = f"{kind}.{self.next_number}.faiss"
        self.next_number += 1
        return name


def _create(settings, dimension: int) -> FaissStore:
    plan = plan_for(settings.index_type, 0, dimension)
    return FaissStore(plan, settings.index_type, Listing(dimension=dimension), None)


def _load(folder: Path, generation: int, description: dict, settings) -> FaissStore:
    """The store of ``generation``, its segments memory-mapped; a legacy one-file index is read whole."""
    folder = Path(folder)
    plan = IndexPlan.from_dict(description) if "kind" in description else FLAT
    listing = read_listing(folder, generation)
    if listing is None:
        return _legacy(folder, generation, plan, settings)
    try:
        trained = read_index(folder / listing.trained, None, mapped=False) if listing.trained else None
        deleted = read_deleted(folder / listing.deleted) if listing.deleted else None
    except FileNotFoundError as error:
        raise VectorsMissing(f"{error} is missing: the index is damaged; rebuild it") from None
    store = FaissStore(plan, settings.index_type, listing, folder, trained, deleted)
    parts = store._parts()  # read (map) every segment now: a reader sees the generation it read, or VectorsMissing
    if parts:  # and work out the search once, before threads share the store
        store._search = SegmentSearch(parts, store.trained, plan)
    return store


def _legacy(folder: Path, generation: int, plan: IndexPlan, settings) -> FaissStore:
    """A store written before segments: one whole index, read into memory, written again at the next save."""
    path = legacy_path(folder, generation)
    try:
        index = read_index(path, None, mapped=False)
    except FileNotFoundError:
        listing = listing_path(folder, generation)
        raise VectorsMissing(f"{listing} is missing: the index is damaged; rebuild it") from None
    store = FaissStore(plan, settings.index_type, Listing(((path.name, int(index.ntotal)),), dimension=index.d), folder)
    store.segments[0].index, store.rewrite = index, True
    set_search_params(index, plan)
    return store


def _discard(folder: Path, keep: int) -> None:
    """Delete every FAISS file generation ``keep`` does not need (all of them when ``keep`` is -1), but those a
    merge of this process is writing."""
    folder = Path(folder)
    listing = read_listing(folder, keep) if keep >= 0 else None
    if listing is not None:
        needed = listing.names() | {listing_path(folder, keep).name}
    else:
        needed = {legacy_path(folder, keep).name} if keep >= 0 else set()
    for pattern in FILE_PATTERNS:
        for path in folder.glob(pattern):
            if path.name not in needed and not in_flight(path):
                path.unlink(missing_ok=True)


ENTRY = StoreEntry(
    create=_create,
    load=_load,
    discard=_discard,
    check=lambda settings: check_index_type(settings.index_type),
    summary="FAISS: exact up to 50,000 vectors, then inverted lists (--index-type); segments per commit",
)
