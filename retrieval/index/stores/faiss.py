"""faiss: FAISS indexes, exact (flat) up to 50,000 vectors then inverted lists (``--index-type``).

One file per generation, ``vectors.<gen>.faiss``; FAISS id = object id. The index kind, its factory
string, search parameters and training count (``faiss_kinds.IndexPlan``) are the store's description
in the manifest; the kind follows the vector count (``faiss_kinds.plan_for``) and changes at a save.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ...atomic import atomic_write
from ...errors import StoreError
from ..faiss_kinds import (
    FLAT,
    IndexPlan,
    all_vectors,
    check_index_type,
    filled_index,
    new_index,
    plan_for,
    remove_ids,
    set_search_params,
    vector_ids,
)
from . import StoreEntry, VectorsMissing


def vectors_path(folder: Path, generation: int) -> Path:
    return Path(folder) / f"vectors.{generation}.faiss"


class FaissStore:
    """A FAISS index and the plan it follows; removals are applied, and the kind re-planned, at ``save``."""

    def __init__(self, index: faiss.Index, plan: IndexPlan, index_type: str) -> None:
        self.index = index
        self.plan = plan
        self.index_type = index_type
        self.dimension = int(index.d)
        self._removed: list[np.ndarray] = []
        set_search_params(index, plan)

    def __len__(self) -> int:
        self._settle_removals()
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):  # pending removals wait for the next read or save: a graph rebuilds once, not per image
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._removed.append(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._settle_removals()
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def ids(self) -> np.ndarray:
        self._settle_removals()
        return vector_ids(self.index)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        self._settle_removals()
        if not len(ids):
            return np.zeros((0, self.dimension), np.float32)
        return self.index.reconstruct_batch(np.asarray(ids, np.int64)).astype(np.float32)

    def describe(self) -> dict:
        return {"store": "faiss", **self.plan.to_dict()}

    def save(self, folder: Path, generation: int) -> None:
        self._settle_removals()
        plan = plan_for(self.index_type, self.index.ntotal, self.dimension, self.plan)
        if plan != self.plan:
            ids, vectors = all_vectors(self.index)
            self.index = filled_index(plan, self.dimension, ids, vectors)
            self.plan = plan
        set_search_params(self.index, plan)

        def write(temp: Path) -> None:
            with open(temp, "wb") as handle:
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(handle.write))

        atomic_write(vectors_path(folder, generation), write)

    def _settle_removals(self) -> None:
        if self._removed:
            self.index = remove_ids(self.index, self.plan, np.concatenate(self._removed))
            self._removed = []


def _create(settings, dimension: int) -> FaissStore:
    plan = plan_for(settings.index_type, 0, dimension)
    return FaissStore(new_index(plan, dimension), plan, settings.index_type)


def _load(folder: Path, generation: int, description: dict, settings) -> FaissStore:
    path = vectors_path(folder, generation)
    if not path.is_file():
        raise VectorsMissing(f"{path} is missing: the index is damaged; rebuild it")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        if not path.is_file():
            raise VectorsMissing(f"{path} is missing: the index is damaged; rebuild it") from None
        raise StoreError(f"{path} cannot be read by FAISS ({str(error).splitlines()[0]}); rebuild the index") from None
    plan = IndexPlan.from_dict(description) if "kind" in description else FLAT
    return FaissStore(index, plan, settings.index_type)


def _discard(folder: Path, keep: int) -> None:
    for path in Path(folder).glob("vectors.*.faiss"):
        if path != vectors_path(folder, keep):
            path.unlink(missing_ok=True)


ENTRY = StoreEntry(
    create=_create,
    load=_load,
    discard=_discard,
    check=lambda settings: check_index_type(settings.index_type),
    summary="FAISS: exact up to 50,000 vectors, then inverted lists (--index-type)",
)
