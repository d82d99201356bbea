"""The FAISS index behind a store: which kind, when to switch, how to search and change it.

Kinds (``--index-type``), all inner product over unit vectors (= cosine):

- ``flat``: exact search, ``IndexIDMap2(IndexFlatIP)``; 4·d bytes per vector.
- ``hnsw``: graph search, ``IndexIDMap2(IndexHNSWFlat, M=32)``; 4·d + ~260 bytes per vector, no training;
  removing vectors rebuilds the graph.
- ``ivf``: inverted lists with 8-bit scalar quantisation, ``IVF{nlist},SQ8``; d + 8 bytes per vector.
- ``ivfpq``: inverted lists with product quantisation, ``IVF{nlist},PQ{d/8}``; d/8 + 8 bytes per vector.
- any other text: a FAISS ``index_factory`` string for experts (wrapped in an ID map when it has none).
- ``auto`` (default): ``flat`` up to ``AUTO_EXACT_LIMIT`` vectors, ``ivf`` beyond.

Trained kinds (``ivf``, ``ivfpq``, factory strings) keep vectors in a ``flat`` index until there are
``TRAIN_PER_LIST`` vectors per inverted list to train on, then switch; they are trained again from
their own vectors when the count has grown ``RETRAIN_GROWTH`` times since. The search parameter
(``nprobe`` or ``efSearch``) is chosen with the kind and recorded in the manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import faiss
import numpy as np

from ..errors import SettingsError

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
AUTO_EXACT_LIMIT = 50_000  # one exact query reads 4·d bytes a vector: ~35 ms at 50k x 1024 on 2 cores
TRAIN_PER_LIST = 40
MAX_TRAINING_VECTORS = 200_000
RETRAIN_GROWTH = 4
HNSW_M = 32
HNSW_EF_SEARCH = 128
NPROBE_FRACTION = 16  # nprobe = nlist / 16: recall@10 >= 0.95 on the benchmark's vectors


@dataclass(frozen=True)
class IndexPlan:
    """What a store's FAISS index is, as the manifest records it under ``"vectors"``.

    Attributes:
        kind: ``flat``, ``hnsw``, ``ivf``, ``ivfpq`` or ``factory``.
        factory: the FAISS factory string of the inner index.
        params: search parameters (``{"nprobe": n}`` or ``{"efSearch": n}``).
        trained_on: how many vectors the index was trained on (0 when it needs no training).
    """

    kind: str
    factory: str
    params: dict = field(default_factory=dict)
    trained_on: int = 0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "factory": self.factory, "params": self.params, "trained_on": self.trained_on}

    @classmethod
    def from_dict(cls, values: dict) -> "IndexPlan":
        return cls(values["kind"], values["factory"], dict(values.get("params", {})), int(values.get("trained_on", 0)))


FLAT = IndexPlan("flat", "Flat")


def check_index_type(index_type: str, dimension: int | None = None) -> None:
    """Refuse an ``--index-type`` that is neither a kind nor a factory string FAISS can build."""
    if index_type in INDEX_TYPES:
        return
    try:
        ivf = ivf_of(faiss.index_factory(dimension or 64, index_type, faiss.METRIC_INNER_PRODUCT))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "not understood"
        raise SettingsError(
            f"--index-type {index_type!r} is neither one of {', '.join(INDEX_TYPES)} nor a FAISS factory string "
            f"FAISS can build ({first[:200]})"
        ) from None
    if ivf is not None and ivf.nlist < 1:
        raise SettingsError(f"--index-type {index_type!r} has no inverted lists: IVF needs a list count of at least 1")


def plan_for(index_type: str, count: int, dimension: int, current: IndexPlan = FLAT) -> IndexPlan:
    """The index ``count`` vectors of ``dimension`` should live in, given the ``current`` one."""
    kind = index_type
    if index_type == "auto":
        kind = "flat" if count <= AUTO_EXACT_LIMIT and current.kind == "flat" else "ivf"
    if kind == "flat":
        return FLAT
    if kind == "hnsw":
        return IndexPlan("hnsw", f"HNSW{HNSW_M},Flat", {"efSearch": HNSW_EF_SEARCH})
    same_kind = current.kind == kind or (current.kind == "factory" and current.factory == kind)
    if same_kind and current.trained_on and count < RETRAIN_GROWTH * current.trained_on:
        return current  # trained recently enough
    nlist = _nlist_for(count)
    if kind == "ivf":
        wanted = IndexPlan("ivf", f"IVF{nlist},SQ8", {"nprobe": max(1, nlist // NPROBE_FRACTION)}, count)
    elif kind == "ivfpq":
        nprobe = {"nprobe": max(1, nlist // NPROBE_FRACTION)}
        wanted = IndexPlan("ivfpq", f"IVF{nlist},PQ{max(1, dimension // 8)}", nprobe, count)
    else:
        wanted = IndexPlan("factory", index_type, {}, count)
    if count < _training_size(wanted, dimension):
        return FLAT  # not enough vectors to train on yet: stay exact
    return wanted


def new_index(plan: IndexPlan, dimension: int) -> faiss.Index:
    """An empty index of ``plan`` that takes ``add_with_ids`` (untrained for trained kinds)."""
    inner = faiss.index_factory(dimension, plan.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = ivf_of(inner)
    if ivf is not None:  # inverted lists keep their own ids; no id → list map (``all_vectors`` makes one)
        if isinstance(ivf, faiss.IndexIVFPQ):
            ivf.do_polysemous_training = False  # only for Hamming filtering, unused here; it takes minutes
        index = inner
    else:
        index = faiss.IndexIDMap2(inner)
    set_search_params(index, plan)
    return index


def filled_index(plan: IndexPlan, dimension: int, ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """An index of ``plan`` holding ``vectors`` (``(N, d)`` float32) under ``ids`` (``(N,)`` int64), trained
    first on them where ``plan`` needs training (``trained_index``)."""
    index = trained_index(plan, dimension, vectors) if plan.trained_on else new_index(plan, dimension)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def trained_index(plan: IndexPlan, dimension: int, vectors: np.ndarray) -> faiss.Index:
    """An empty index of ``plan`` trained on ``vectors`` (``(N, d)`` float32), or on a random
    ``MAX_TRAINING_VECTORS`` of them."""
    index = new_index(plan, dimension)
    if not index.is_trained:
        sample = vectors
        if len(vectors) > MAX_TRAINING_VECTORS:
            sample = vectors[np.random.default_rng(0).choice(len(vectors), MAX_TRAINING_VECTORS, replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def set_search_params(index: faiss.Index, plan: IndexPlan) -> None:
    """Apply the plan's ``nprobe`` / ``efSearch`` to ``index``.

    Inverted lists are also searched in parallel within one query (FAISS ``parallel_mode`` 1): the
    searcher sends one query at a time, which FAISS would otherwise give to one thread.
    """
    ivf = ivf_of(index)
    if ivf is not None:
        ivf.parallel_mode = 1
        if "nprobe" in plan.params:
            ivf.nprobe = int(plan.params["nprobe"])
    if "efSearch" in plan.params:
        hnsw = _hnsw_of(index)
        if hnsw is not None:
            hnsw.hnsw.efSearch = int(plan.params["efSearch"])


def vector_ids(index: faiss.Index) -> np.ndarray:
    """Every id stored in ``index``, sorted (``(N,)`` int64)."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(index, faiss.IndexIDMap2) or isinstance(index, faiss.IndexIDMap):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = ivf_of(index)
    invlists = ivf.invlists
    parts = []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
    return np.sort(np.concatenate(parts).astype(np.int64))


def all_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (N,), vectors (N, d))`` of everything in ``index`` (exact for flat and hnsw, decoded otherwise)."""
    ids = vector_ids(index)
    if not len(ids):
        return ids, np.zeros((0, index.d), np.float32)
    return ids, reconstructable(index).reconstruct_batch(ids).astype(np.float32)


def reconstructable(index: faiss.Index) -> faiss.Index:
    """``index``, able to ``reconstruct`` by id: inverted lists get their id → (list, offset) map the first time
    (kept only where vectors are read back: it costs ~50 bytes a vector)."""
    ivf = ivf_of(index)
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def remove_ids(index: faiss.Index, plan: IndexPlan, ids: np.ndarray) -> faiss.Index:
    """``index`` without ``ids``; indexes that cannot remove (graphs) are rebuilt without them."""
    try:
        index.remove_ids(ids.astype(np.int64))
        return index
    except RuntimeError:  # FAISS refuses before changing anything
        pass
    kept_ids, vectors = all_vectors(index)
    keep = ~np.isin(kept_ids, ids)
    return filled_index(plan, index.d, kept_ids[keep], vectors[keep])


def _nlist_for(count: int) -> int:
    """Inverted lists for ``count`` vectors: a power of two near 4·sqrt(count), between 64 and 65536."""
    return int(min(65536, max(64, 2 ** round(math.log2(4 * math.sqrt(max(count, 1)))))))


def _training_size(plan: IndexPlan, dimension: int) -> int:
    """Vectors needed to train ``plan``: ``TRAIN_PER_LIST`` per inverted list, or 1000 for other trained indexes."""
    ivf = ivf_of(faiss.index_factory(dimension, plan.factory, faiss.METRIC_INNER_PRODUCT))
    return TRAIN_PER_LIST * ivf.nlist if ivf is not None else 1000


def ivf_of(index: faiss.Index | None):
    """The inverted-list index inside ``index`` (downcast), or ``None``."""
    if index is None:
        return None
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def _hnsw_of(index: faiss.Index):
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return inner if isinstance(inner, faiss.IndexHNSW) else None
