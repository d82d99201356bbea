"""Query expansion: α-QE at query time (``--rerank aqe``) and its gallery-side twin, database-side
augmentation (DBA, ``index --dba K``), after Radenović, Tolias and Chum ("Fine-tuning CNN image retrieval
with no human annotation", TPAMI 2018).

Both replace a unit vector ``x`` by ``normalise(x + Σ_i max(s_i, 0)^α · n_i)`` over its ``k`` nearest
neighbours ``n_i`` (cosines ``s_i``): the vector itself weighs 1, negative cosines nothing. α-QE then
searches again with the expanded query; DBA expands every gallery vector once, at each commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..validation import check_choice, check_float, check_int

if TYPE_CHECKING:
    from ..index.stores import VectorStore

RERANKS = ("none", "aqe")
DEFAULT_QE_K = 3  # measured on the grocery photos: k=3 raised mAP on both protocols, k=10 lowered one (README)
DEFAULT_ALPHA = 3.0
MAX_QE_K = 1000
OPTION_NAMES = ("--rerank", "--qe-k", "--qe-alpha")  # as the CLI spells them; the HTTP API's: rerank, qe_k, ...


@dataclass(frozen=True)
class Rerank:
    """How a query is re-ranked: ``method`` ``none`` or ``aqe`` (α-QE over the top ``k`` objects, weights
    ``cosine^alpha``; ``k = 0`` is no re-ranking)."""

    method: str = "none"
    k: int = DEFAULT_QE_K
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        _, k, alpha = check_rerank(self.method, self.k, self.alpha)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "alpha", alpha)

    @classmethod
    def of(cls, method: object, k: object, alpha: object, names: tuple[str, str, str] = OPTION_NAMES) -> "Rerank":
        """The options checked, errors naming them as ``names`` spells them (``SettingsError``)."""
        return cls(*check_rerank(method, k, alpha, names))

    @property
    def active(self) -> bool:
        return self.method == "aqe" and self.k > 0

    def to_dict(self) -> dict:
        return {"rerank": self.method, "qe_k": self.k, "qe_alpha": self.alpha}


def check_rerank(
    method: object, k: object, alpha: object, names: tuple[str, str, str] = OPTION_NAMES
) -> tuple[str, int, float]:
    """``(method, k, alpha)`` checked: a known method, ``0 <= k <= MAX_QE_K``, ``0 <= alpha <= 100``."""
    return (
        check_choice(names[0], method, RERANKS),
        check_int(names[1], k, 0, MAX_QE_K),
        check_float(names[2], alpha, 0, 100),
    )


def expanded(vectors: np.ndarray, neighbours: np.ndarray, scores: np.ndarray, alpha: float) -> np.ndarray:
    """``(Q, d)`` unit rows, each the normalised sum of its row of ``vectors`` (``(Q, d)``) and its
    ``neighbours`` (``(Q, k, d)``) weighted by ``max(scores, 0)^alpha`` (``scores``: ``(Q, k)`` cosines)."""
    scores = np.asarray(scores, np.float32)
    weights = np.where(scores > 0, np.maximum(scores, 0) ** np.float32(alpha), np.float32(0))
    sums = np.asarray(vectors, np.float32) + np.einsum("qk,qkd->qd", weights, np.asarray(neighbours, np.float32))
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def augmented(vectors: np.ndarray, k: int, alpha: float = DEFAULT_ALPHA, chunk: int = 2048) -> np.ndarray:
    """DBA: each of the ``(N, d)`` unit rows expanded with its ``k`` nearest other rows (exact inner-product
    search, ``chunk`` rows at a time: O(N² d), meant for galleries up to about 100,000 vectors)."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    k = min(k, len(vectors) - 1)
    if k <= 0:
        return vectors.copy()
    out = np.empty_like(vectors)
    for start in range(0, len(vectors), chunk):
        rows = np.arange(start, min(start + chunk, len(vectors)))
        scores = vectors[rows] @ vectors.T
        scores[np.arange(len(rows)), rows] = -np.inf  # itself is not its own neighbour
        nearest = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out[rows] = expanded(vectors[rows], vectors[nearest], np.take_along_axis(scores, nearest, 1), alpha)
    return out


def expand_queries(store: "VectorStore", queries: np.ndarray, rerank: Rerank) -> np.ndarray:
    """α-QE of ``(Q, d)`` searched-space queries over ``store``'s top ``rerank.k`` vectors each (one search
    for all rows); the queries themselves, unchanged, when ``rerank`` is not active or the store is empty."""
    if not rerank.active or len(store) == 0 or not len(queries):
        return queries
    scores, ids = store.search(queries, min(rerank.k, len(store)))
    found = ids >= 0  # an approximate index may return fewer than k
    neighbours = np.zeros((*ids.shape, queries.shape[1]), np.float32)
    neighbours[found] = store.reconstruct(ids[found])
    return expanded(queries, neighbours, np.where(found, scores, 0), rerank.alpha)
