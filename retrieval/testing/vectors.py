"""Synthetic embeddings: unit vectors drawn from a mixture of clusters, for vector-search tests and benchmarks.

Each vector is a random unit centre plus Gaussian noise of norm ``SPREAD`` (cosine to its centre about 0.7),
L2-normalised, like embeddings of many objects seen a few dozen times each.
"""

from __future__ import annotations

import numpy as np

SPREAD = 1.0


def unit_mixture(count: int, dimension: int, clusters: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``(count, dimension)`` float32 unit rows drawn from a mixture of ``clusters`` (see the module's doc).

    The cluster centres depend only on ``clusters`` and ``dimension``; ``seed`` draws the rows.
    """
    rng = np.random.default_rng(seed)
    centres = _normalised(np.random.default_rng(12345).standard_normal((clusters, dimension)))
    out = np.empty((count, dimension), dtype=np.float32)
    for start in range(0, count, chunk):
        rows = min(chunk, count - start)
        noise = rng.standard_normal((rows, dimension), dtype=np.float32) * (SPREAD / np.sqrt(dimension))
        out[start : start + rows] = _normalised(centres[rng.integers(0, len(centres), rows)] + noise)
    return out


def _normalised(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32, copy=False)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
