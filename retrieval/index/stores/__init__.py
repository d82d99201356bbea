"""The vector-store door: a protocol, an entry type and the registry of stores by name.

A vector store keeps an index's vectors under their object ids and answers inner-product searches over
them (unit vectors, so scores are cosines). It is saved whole at each commit *generation* (the store
writer's commit protocol, ``index/store.py``, decides when), and loaded back at one generation. Built-in
stores are the modules of this package (``faiss``); ``register_store`` adds others at run time. Nothing
outside a store module touches the library behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from ...errors import StoreError
from ...registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from ...settings import IndexSettings


class VectorStore(Protocol):
    """Vectors by object id.

    ``ids`` are ``(N,)`` int64, ``vectors`` and ``queries`` ``(N, dimension)`` float32 unit rows.
    """

    dimension: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, both ``(Q, k)``, best first; id -1 (score -inf or anything) past the last hit."""
        ...

    def ids(self) -> np.ndarray:
        """Every stored id, sorted."""
        ...

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (decoded, for a compressed store)."""
        ...

    def describe(self) -> dict:
        """What the manifest records under ``"vectors"``: ``{"store": name, ...}`` (the store's own fields)."""
        ...

    def save(self, folder: Path, generation: int) -> None:
        """Write this state as ``generation`` in ``folder``, atomically (an ``OSError`` on failure)."""
        ...


class VectorsMissing(StoreError):
    """The vectors of the committed generation are missing (damage, or a commit that raced the read)."""


@dataclass(frozen=True)
class StoreEntry:
    """How to make, load and tidy one kind of vector store.

    Attributes:
        create: ``(settings, dimension) -> VectorStore``, empty.
        load: ``(folder, generation, description, settings) -> VectorStore``: the state saved at
            ``generation``; ``description`` is what ``describe()`` gave then; ``settings`` are those the
            store will work under from now on (a changed ``index_type``, say). Raises ``VectorsMissing``
            when that generation's files are gone, ``StoreError`` when they cannot be read.
        discard: ``(folder, keep)``: delete every generation's files but ``keep``'s (old ones, debris).
        check: ``(settings) -> None``: refuse the store's own options before any model is loaded.
        summary: one line for ``--help``.
    """

    create: Callable[["IndexSettings", int], VectorStore]
    load: Callable[[Path, int, dict, "IndexSettings"], VectorStore]
    discard: Callable[[Path, int], None]
    check: Callable[["IndexSettings"], None] = lambda settings: None
    summary: str = ""


STORES: Registry[StoreEntry] = Registry("vector store", "retrieval.index.stores")


def register_store(name: str, entry: StoreEntry) -> StoreEntry:
    """Make ``entry`` available as ``--vector-store name`` / ``IndexSettings(vector_store=name)``."""
    return STORES.register(name, entry)


def store_name(description: dict) -> str:
    """The store a manifest's ``"vectors"`` entry names (indexes from before the door were FAISS)."""
    return str(description.get("store", "faiss"))
