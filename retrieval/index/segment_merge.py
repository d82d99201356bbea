"""Merging segments of a FAISS store (segments.py) into one: at once (``merged_index``), or in a background
thread while indexing goes on (``MergeJob``).

Inverted-list segments share one trained quantizer and code layout, so a merge moves their codes list by
list (FAISS ``merge_from``) without decoding or encoding a vector; other kinds are rebuilt from their vectors
(exact for ``flat``; ``hnsw`` builds one graph of them). Deleted ids are left out of the merged segment.
A merge only reads segment files, which never change, and writes a new one, which no listing names until the
writer records it in its next commit; until then ``in_flight`` keeps the store's tidying from removing it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .faiss_kinds import IndexPlan, all_vectors, ivf_of, new_index, remove_ids, set_search_params, vector_ids
from .segments import read_index, write_index

log = logging.getLogger(__name__)

_IN_FLIGHT: set[Path] = set()
_IN_FLIGHT_LOCK = threading.Lock()


def in_flight(path: Path) -> bool:
    """True while a merge of this process is writing ``path`` or its result waits to be committed."""
    with _IN_FLIGHT_LOCK:
        return Path(path) in _IN_FLIGHT


def fresh_index(trained: faiss.Index | None, plan: IndexPlan, dimension: int) -> faiss.Index:
    """An empty index of ``plan`` to add vectors to: a copy of ``trained`` (``None``: a kind without training)."""
    if trained is None:
        return new_index(plan, dimension)
    index = faiss.clone_index(trained)
    index.reset()
    set_search_params(index, plan)
    return index


def merged_index(
    folder: Path, sources: list[str], trained: faiss.Index | None, plan: IndexPlan, dimension: int,
    deleted: np.ndarray,
) -> tuple[faiss.Index, np.ndarray]:
    """``(index, dropped)``: one index of every vector in the segment files ``sources`` but the ``deleted``
    ids (``(K,)`` int64), and which of those it left out."""
    merged = fresh_index(trained, plan, dimension)
    target = ivf_of(merged) if trained is not None else None
    for name in sources:
        part = read_index(Path(folder) / name, trained, mapped=target is None)  # merge_from moves lists: read whole
        if target is not None:
            target.merge_from(ivf_of(part), 0)
        else:
            ids, vectors = all_vectors(part)
            merged.add_with_ids(vectors, ids)
    dropped = np.intersect1d(vector_ids(merged), deleted)
    if len(dropped):
        merged = remove_ids(merged, plan, dropped)
    return merged, dropped


@dataclass(frozen=True)
class Merged:
    """A finished merge: segment files ``sources`` are now file ``name`` of ``count`` vectors, without ids
    ``dropped``."""

    sources: tuple[str, ...]
    name: str
    count: int
    dropped: np.ndarray


class MergeJob:
    """Merges segment files into ``folder/name`` in a daemon thread."""

    def __init__(self, folder: Path, sources: list[str], name: str, trained, plan: IndexPlan, dimension: int,
                 deleted: np.ndarray) -> None:
        self.path = Path(folder) / name
        self.sources = tuple(sources)
        self._outcome: Merged | None = None
        self._error: BaseException | None = None
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.add(self.path)
        arguments = (Path(folder), list(sources), trained, plan, dimension, deleted)
        self._thread = threading.Thread(target=self._run, args=arguments, name=f"merge {name}", daemon=True)
        self._thread.start()

    def _run(self, folder, sources, trained, plan, dimension, deleted) -> None:
        try:
            index, dropped = merged_index(folder, sources, trained, plan, dimension, deleted)
            write_index(self.path, index)
            self._outcome = Merged(self.sources, self.path.name, int(index.ntotal), dropped)
        except Exception as error:  # a failed merge leaves the segments as they are
            self._error = error

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self, wait: bool) -> Merged | None:
        """The finished merge (``None`` while it runs, or when it failed: the segments stay as they are)."""
        if wait:
            self._thread.join()
        if self._thread.is_alive():
            return None
        if self._error is not None:
            log.warning("merging %d segments into %s failed (%s); they stay as they are", len(self.sources),
                        self.path.name, self._error)
            self.release(keep_file=False)
        return self._outcome

    def release(self, keep_file: bool) -> None:
        """Stop protecting the merged file (a committed listing names it now, or it is not wanted: removed)."""
        self._thread.join()
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(self.path)
        if not keep_file:
            self.path.unlink(missing_ok=True)
