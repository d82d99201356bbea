"""PCA whitening learned on a gallery's own vectors (``--whiten [DIM]``), as in Radenović, Tolias and Chum
("Fine-tuning CNN image retrieval with no human annotation", TPAMI 2018) and Jégou and Chum (ECCV 2012).

A whitening maps ``(N, D)`` unit rows to ``(N, d)`` unit rows: subtract the gallery mean, project onto the
covariance's ``d`` leading eigenvectors, scale each coordinate by ``(λ + ε)^-1/2``, L2-normalise. The
shrinkage ``ε = SHRINKAGE · mean eigenvalue`` keeps the smallest kept directions from blowing up noise, so a
gallery with fewer vectors than dimensions whitens stably; ``d`` is at most the rank, ``min(D, N - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

SHRINKAGE = 0.1  # ε as a fraction of the mean eigenvalue
RELEARN_GROWTH = 2.0  # relearn once the gallery holds this many times the vectors it was learned on
MIN_VECTORS = 2  # fewer give no direction to learn


@dataclass(frozen=True)
class Whitening:
    """A learned whitening.

    Attributes:
        mean: ``(D,)`` float32, the gallery mean.
        projection: ``(D, d)`` float32, eigenvectors (columns, by descending eigenvalue) scaled by
            ``(λ + ε)^-1/2``.
        learned_on: how many vectors it was learned on.
        requested: the ``--whiten`` value it was learned for (-1: all dimensions).
    """

    mean: np.ndarray
    projection: np.ndarray
    learned_on: int
    requested: int

    @property
    def dimension(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """``(N, D)`` rows → ``(N, d)`` float32 whitened unit rows (a row that whitens to zero stays zero)."""
        rows = (np.asarray(vectors, np.float32).reshape(-1, len(self.mean)) - self.mean) @ self.projection
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return (rows / np.maximum(norms, 1e-12)).astype(np.float32)

    def save(self, path: Path) -> None:
        """Write it as ``.npz`` at ``path``, atomically."""

        def write(temp: Path) -> None:
            with open(temp, "wb") as handle:
                np.savez(handle, mean=self.mean, projection=self.projection, counts=[self.learned_on, self.requested])

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path) -> "Whitening":
        with np.load(path) as saved:
            learned_on, requested = (int(v) for v in saved["counts"])
            return cls(saved["mean"], saved["projection"], learned_on, requested)


def learn_whitening(vectors: np.ndarray, requested: int) -> Whitening:
    """Learn a whitening on ``(N, D)`` rows (N ≥ ``MIN_VECTORS``) keeping ``requested`` dimensions (-1: all),
    at most ``min(D, N - 1)``."""
    rows = np.asarray(vectors, np.float64)
    count, dimension = rows.shape
    if count < MIN_VECTORS:
        raise ValueError(f"whitening needs {MIN_VECTORS} vectors, got {count}")
    mean = rows.mean(axis=0)
    centred = rows - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / count)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.clip(eigenvalues[order], 0.0, None), eigenvectors[:, order]
    kept = min(dimension, count - 1) if requested == -1 else min(requested, dimension, count - 1)
    shrinkage = max(SHRINKAGE * float(eigenvalues.mean()), 1e-12)
    projection = eigenvectors[:, :kept] / np.sqrt(eigenvalues[:kept] + shrinkage)
    return Whitening(mean.astype(np.float32), projection.astype(np.float32), count, requested)


def whitening_for(vectors: np.ndarray, requested: int, previous: Whitening | None) -> Whitening | None:
    """The whitening to search ``(N, D)`` rows with: ``previous`` while it was learned for ``requested`` and
    the gallery has not grown to ``RELEARN_GROWTH`` times its count, else a new one; ``None`` (no
    whitening yet) with fewer than ``MIN_VECTORS`` rows and nothing to reuse."""
    count = len(vectors)
    if previous is not None and previous.requested == requested and count < RELEARN_GROWTH * previous.learned_on:
        return previous
    return learn_whitening(vectors, requested) if count >= MIN_VECTORS else None
