"""The searched vectors of a store: the stored ones, or vectors derived from them by whitening and DBA.

The vector store keeps the embedder's unit vectors as they came (export and the agreement checks read
them). With ``whiten`` or ``dba`` set, every commit derives the searched vectors from all of them::

    searched = normalise(whiten(stored))         whitening learned on the stored vectors (search/whitening.py)
    searched = DBA(searched, k=dba, α=3)         each expanded with its k nearest neighbours (search/rerank.py)

and writes them, beside the generation's own files, as ``search/<gen>/`` in the store folder: a vector store
of the same kind (its own files of generation ``gen``) and ``whitening.npz``. They are written before the
SQLite transaction that commits ``gen`` (which records their description under ``"search"`` in the store's
description) and older generations' folders are removed after it, as the stored vectors' files are, so a
reader of generation ``g`` finds both of ``g``. The derivation is done whole at each commit: DBA's neighbour
search grows as the square of the gallery, meant for galleries up to about 100,000 objects.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..search.rerank import DEFAULT_ALPHA, augmented
from ..search.whitening import Whitening, whitening_for
from ..settings import IndexSettings
from .stores import STORES, VectorsMissing, VectorStore, store_name

SEARCH_FOLDER = "search"
WHITENING_NAME = "whitening.npz"
DBA_ALPHA = DEFAULT_ALPHA


@dataclass(frozen=True)
class SearchSpace:
    """What a query searches: ``vectors`` (ids are object ids) and the ``whitening`` a query goes through
    first (``None``: queries are searched as embedded). ``description`` is the ``"search"`` entry of the
    store's description (``None`` when the stored vectors are searched)."""

    vectors: VectorStore
    whitening: Whitening | None = None
    description: dict | None = None

    def project(self, queries: np.ndarray) -> np.ndarray:
        """``(Q, D)`` (or ``(D,)``) embedder unit vectors → ``(Q, d)`` float32 rows of the searched space."""
        rows = np.asarray(queries, np.float32).reshape(1, -1) if np.ndim(queries) == 1 else queries
        return np.ascontiguousarray(self.whitening.apply(rows) if self.whitening else rows, dtype=np.float32)


def split_description(description: dict) -> tuple[dict, dict | None]:
    """A committed store description → ``(the vector store's own, the "search" entry or None)``."""
    own = {key: value for key, value in description.items() if key != "search"}
    return own, description.get("search")


def derives(settings: IndexSettings) -> bool:
    """True when ``settings`` search derived vectors (``whiten`` or ``dba`` set)."""
    return bool(settings.whiten or settings.dba)


def derive(
    folder: Path, stored: VectorStore, settings: IndexSettings, generation: int, previous: Whitening | None
) -> tuple[dict | None, Whitening | None]:
    """Write ``generation``'s searched vectors derived from ``stored`` under ``folder/search/<generation>``.

    ``previous`` is the committed whitening, reused unless relearning is due (``whitening_for``). Returns
    ``(description, whitening)``; ``(None, None)`` when ``settings`` derive nothing (nothing is written).
    """
    if not derives(settings):
        return None, None
    ids = stored.ids()
    vectors = stored.reconstruct(ids)
    whitening = whitening_for(vectors, settings.whiten, previous) if settings.whiten else None
    searched = whitening.apply(vectors) if whitening else vectors
    if settings.dba:
        searched = augmented(searched, settings.dba, DBA_ALPHA)
    target = Path(folder) / SEARCH_FOLDER / str(generation)
    target.mkdir(parents=True, exist_ok=True)
    derived = STORES.get(store_name(stored.describe())).create(settings, searched.shape[1])
    derived.add(ids, searched)
    derived.save(target, generation)
    if whitening is not None:
        whitening.save(target / WHITENING_NAME)
    description = {
        "whiten": settings.whiten,
        "dimension": int(searched.shape[1]),
        "learned_on": whitening.learned_on if whitening else 0,
        "dba": settings.dba,
        "dba_alpha": DBA_ALPHA if settings.dba else None,
        "vectors": derived.describe(),
    }
    return description, whitening


def load_space(
    folder: Path, generation: int, description: dict | None, settings: IndexSettings, stored: VectorStore
) -> SearchSpace:
    """The search space committed at ``generation`` (``description``: its ``"search"`` entry, or ``None``
    for the stored vectors). ``VectorsMissing`` when its files are gone (a commit that raced the read)."""
    if description is None:
        return SearchSpace(stored)
    target = Path(folder) / SEARCH_FOLDER / str(generation)
    vectors = STORES.get(store_name(description["vectors"])).load(target, generation, description["vectors"], settings)
    whitening = load_whitening(folder, generation, description)
    if not np.array_equal(np.sort(vectors.ids()), np.sort(stored.ids())):
        raise StoreError(f"{target}: the searched vectors are not those of the stored ones; rebuild the index")
    return SearchSpace(vectors, whitening, description)


def load_whitening(folder: Path, generation: int, description: dict | None) -> Whitening | None:
    """The whitening committed at ``generation`` (``None`` where there is none)."""
    if not description or not description.get("learned_on"):
        return None
    path = Path(folder) / SEARCH_FOLDER / str(generation) / WHITENING_NAME
    if not path.is_file():
        raise VectorsMissing(f"{path} is missing: the index is damaged; rebuild it")
    try:
        return Whitening.load(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise StoreError(f"{path} cannot be read ({error}); rebuild the index") from None


def discard_space(folder: Path, keep: int) -> None:
    """Remove every generation's searched vectors but ``keep``'s (old ones, debris); the ``search`` folder
    goes when nothing is left in it."""
    root = Path(folder) / SEARCH_FOLDER
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name == str(keep):
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if not any(root.iterdir()):
        root.rmdir()
