"""The benchmark's vector-search section: each index kind on synthetic unit vectors, against exact search.

Vectors: a mixture of ``n / CLUSTER_SIZE`` clusters around random unit centres, each vector its centre
plus Gaussian noise of norm 1 (``retrieval.testing.vectors``) (cosine to its centre about 0.7), L2-normalised, like
embeddings of many objects seen a few dozen times each. Queries are held-out draws from the same
mixture. Exact top-10 by inner product (``faiss.knn``) is the truth that recall@10 is measured against.

Each index is built with the project's own code (``retrieval.index.faiss_kinds``): the same factory
strings, training sample and search parameters ``retrieval index --index-type KIND`` uses.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import faiss
import numpy as np

from retrieval.index.faiss_kinds import filled_index, plan_for
from retrieval.testing.vectors import unit_mixture

CLUSTER_SIZE = 50
QUERIES = 200
SINGLE_QUERIES = 50  # timed one at a time (exact search over 1M x 2048 takes about a second each)
TOP_K = 10


def measure_kind(kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Build the ``kind`` index over ``vectors`` and measure it; ``truth`` is ``(Q, TOP_K)`` exact ids."""
    count, dimension = vectors.shape
    plan = plan_for(kind, count, dimension)
    started = time.perf_counter()
    index = filled_index(plan, dimension, np.arange(count, dtype=np.int64), vectors)
    build_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:  # on disk: a 1M x 2048 index does not fit in memory twice
        faiss.write_index(index, f"{folder}/index.faiss")
        size = os.path.getsize(f"{folder}/index.faiss")
    single = []
    for query in queries[:SINGLE_QUERIES]:
        started = time.perf_counter()
        index.search(query.reshape(1, -1), TOP_K)
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    _, found = index.search(queries, TOP_K)
    batch_seconds = time.perf_counter() - started
    recall = np.mean([len(set(f) & set(t)) / TOP_K for f, t in zip(found, truth)])
    return {
        "vectors": count,
        "dimension": dimension,
        "kind": kind,
        "factory": plan.factory,
        "params": plan.params,
        "build_s": round(build_seconds, 2),
        "bytes_per_vector": round(size / count, 1),
        "index_mb": round(size / 2**20, 1),
        "single_ms_p50": round(1000 * statistics.median(single), 3),
        "single_ms_p95": round(1000 * float(np.percentile(single, 95)), 3),
        "batch_ms_per_query": round(1000 * batch_seconds / len(queries), 3),
        f"recall@{TOP_K}": round(float(recall), 4),
    }


def vector_rows(sizes: list[int], dimensions: list[int], kinds: list[str], progress=print) -> list[dict]:
    """Every ``kind`` at every size and dimension; one data set in memory at a time."""
    rows = []
    for dimension in dimensions:
        for count in sizes:
            progress(f"vectors: {count:,} x {dimension}: generating and computing the exact top-{TOP_K}")
            clusters = max(1, count // CLUSTER_SIZE)
            vectors = unit_mixture(count, dimension, clusters, seed=1)
            queries = unit_mixture(QUERIES, dimension, clusters, seed=2)
            _, truth = faiss.knn(queries, vectors, TOP_K, metric=faiss.METRIC_INNER_PRODUCT)
            for kind in kinds:
                progress(f"vectors: {count:,} x {dimension}: {kind}")
                rows.append(measure_kind(kind, vectors, queries, truth))
            del vectors
    return rows
