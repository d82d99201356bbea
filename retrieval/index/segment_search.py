"""Searching and reading a FAISS store's segments (segments.py) as one index.

Inverted-list segments share one coarse quantizer, so their lists line up: list ``i`` of the store is list
``i`` of every segment, and FAISS ``HStackInvertedLists`` makes them one index without copying a code. A
query then chooses its lists once and scans each list's entries in every segment, which gives exactly the
hits of one merged index at about its speed. Other kinds (flat, hnsw) ask every segment for its best ``k``
and keep the best ``k`` of those. Deleted ids are left out by a FAISS ``IDSelector`` inside the search.
"""

from __future__ import annotations

import faiss
import numpy as np

from .faiss_kinds import IndexPlan, ivf_of, reconstructable, set_search_params


class SegmentSearch:
    """Searches ``parts`` (segment indexes) as one index: ``search`` gives ``(scores, ids)``, both ``(Q, k)``,
    best first, without the ``deleted`` ids. ``trained`` is the trained index whose quantizer inverted-list
    parts share (``None``: none); such parts are stacked into one index once (``stacked``)."""

    def __init__(self, parts: list[faiss.Index], trained: faiss.Index | None, plan: IndexPlan) -> None:
        self.parts, self.plan = parts, plan
        inverted = trained is not None and ivf_of(trained) is not None and all(ivf_of(p) is not None for p in parts)
        self.index = stacked(parts, trained, plan, self) if inverted and len(parts) > 1 else None
        if self.index is None and len(parts) == 1:
            self.index = parts[0]

    def search(self, queries: np.ndarray, k: int, deleted: faiss.IDSelector | None) -> tuple[np.ndarray, np.ndarray]:
        """``queries``: ``(Q, d)`` float32, contiguous."""
        if self.index is not None:
            return self.index.search(queries, k, params=_params(self.index, self.plan, deleted))
        params = _params(self.parts[0], self.plan, deleted)
        results = [part.search(queries, k, params=params) for part in self.parts]
        scores = np.concatenate([found for found, _ in results], axis=1)
        ids = np.concatenate([found for _, found in results], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, axis=1), np.take_along_axis(ids, best, axis=1)


def stacked(parts: list[faiss.Index], trained: faiss.Index, plan: IndexPlan, keeper) -> faiss.Index:
    """One inverted-list index whose list ``i`` is list ``i`` of every part, read in place (FAISS
    ``HStackInvertedLists``: nothing copied, mapped parts stay mapped), under a copy of ``trained``'s
    quantizer. ``keeper`` keeps the stack's parts alive as long as it lives."""
    lists = faiss.InvertedListsPtrVector()
    for part in parts:
        lists.push_back(ivf_of(part).invlists)
    keeper._lists, keeper._stack = lists, faiss.HStackInvertedLists(lists.size(), lists.data())
    index = faiss.clone_index(trained)
    ivf = ivf_of(index)
    ivf.replace_invlists(keeper._stack, False)
    index.ntotal = ivf.ntotal = sum(int(part.ntotal) for part in parts)
    set_search_params(index, plan)
    return index


def _params(part: faiss.Index, plan: IndexPlan, deleted: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """Search parameters carrying ``plan``'s ``nprobe`` / ``efSearch`` and the deletions (``None``: the index's own)."""
    if deleted is None:
        return None
    if "nprobe" in plan.params and ivf_of(part) is not None:
        params = faiss.SearchParametersIVF(nprobe=int(plan.params["nprobe"]))
    elif "efSearch" in plan.params:
        params = faiss.SearchParametersHNSW(efSearch=int(plan.params["efSearch"]))
    else:
        params = faiss.SearchParameters()
    params.sel = deleted
    return params


class Deletions:
    """Deleted ids (``(K,)`` int64, sorted) and ``selector``, a FAISS selector of every other id (``None``
    when nothing is deleted)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, np.int64)
        self._batch = faiss.IDSelectorBatch(np.ascontiguousarray(self.ids)) if len(self.ids) else None
        self.selector = faiss.IDSelectorNot(self._batch) if self._batch is not None else None  # points at _batch


def reconstruct_from(parts: list[faiss.Index], part_ids: list[np.ndarray], ids: np.ndarray, dimension: int) -> np.ndarray:
    """``(N, dimension)`` float32 stored vectors of ``ids`` (each in one of ``parts``, whose sorted ids are
    ``part_ids``); inverted-list parts get a direct map (id → list and offset) the first time."""
    vectors = np.zeros((len(ids), dimension), np.float32)
    found = np.zeros(len(ids), bool)
    for part, stored in zip(parts, part_ids):
        position = np.minimum(np.searchsorted(stored, ids), max(len(stored) - 1, 0))
        here = (stored[position] == ids) & ~found if len(stored) else np.zeros(len(ids), bool)
        if here.any():
            vectors[here] = reconstructable(part).reconstruct_batch(ids[here].astype(np.int64))
            found |= here
    if not found.all():
        raise KeyError(f"ids not stored: {ids[~found][:5].tolist()}")
    return vectors
