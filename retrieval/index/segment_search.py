"""Searching and reading a FAISS store's segments (segments.py) as one index.

A search asks every segment for its best ``k`` and keeps the best ``k`` of those. Inverted-list segments share
one coarse quantizer, so the lists to visit are chosen once per query and every segment scans the same lists
(FAISS ``search_preassigned``; what ``IndexShardsIVF`` does), which gives exactly the hits one merged index
would. Deleted ids are left out by a FAISS ``IDSelector`` inside each segment's search.
"""

from __future__ import annotations

import faiss
import numpy as np

from .faiss_kinds import IndexPlan, ivf_of, reconstructable


def search_segments(
    parts: list[faiss.Index], queries: np.ndarray, k: int, trained: faiss.Index | None, plan: IndexPlan,
    deleted: faiss.IDSelector | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)``, both ``(Q, k)``, best first, over ``parts`` without ``deleted``; ``queries`` ``(Q, d)``
    float32. ``trained`` is the trained index whose quantizer inverted-list ``parts`` share (``None``: none)."""
    if len(parts) == 1 and deleted is None:
        return parts[0].search(queries, k)
    shared = ivf_of(trained) if trained is not None else None
    if shared is not None and all(faiss.downcast_index(part).__class__ is shared.__class__ for part in parts):
        results = _preassigned(parts, queries, k, shared, plan, deleted)
    else:
        params = _params(parts[0], plan, deleted)
        results = [part.search(queries, k, params=params) for part in parts]
    scores = np.concatenate([found for found, _ in results], axis=1)
    ids = np.concatenate([found for _, found in results], axis=1)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, best, axis=1), np.take_along_axis(ids, best, axis=1)


def _preassigned(parts, queries, k, shared, plan, deleted) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each inverted-list part's best ``k``, its lists chosen once by ``shared``'s quantizer."""
    nprobe = int(plan.params.get("nprobe", shared.nprobe))
    coarse_scores, coarse_lists = shared.quantizer.search(queries, min(nprobe, shared.nlist))
    params = faiss.SearchParametersIVF(nprobe=coarse_lists.shape[1])
    if deleted is not None:
        params.sel = deleted
    results = []
    for part in parts:
        scores = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        faiss.downcast_index(part).search_preassigned_c(
            len(queries), faiss.swig_ptr(queries), k, faiss.swig_ptr(coarse_lists), faiss.swig_ptr(coarse_scores),
            faiss.swig_ptr(scores), faiss.swig_ptr(ids), False, params,
        )
        results.append((scores, ids))
    return results


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
