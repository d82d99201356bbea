#!/usr/bin/env python3
"""Benchmark: what a commit of new vectors costs as the FAISS store grows, and what segments cost searches.

Commits: for each store size of ``--sizes`` (synthetic unit vectors, ``--dimension``, the store's ``auto``
kind: exact up to 50,000 vectors, inverted lists beyond), the store is filled in one commit, then
``--commits`` commits of ``--batch`` new vectors each are timed (the save, as ``StoreWriter.commit`` calls it,
and the tidying after it) and the bytes of the files each writes are summed. For comparison, the bytes and
seconds of writing the whole index once: what every commit cost before segments.

Searches: a store of ``--search-size`` vectors is cut into 1, 10 and 50 segments (no merging: one bulk
segment, then one per commit of 1,000), and the mean latency of one query at a time (as the searcher sends
them; top 100) is measured against the same vectors in one segment, reading the segments as a reader does
(the small ones merged into one at load, then every part stacked into one index) and with every segment
mapped (and stacked).

Usage: python scripts/benchmark_segments.py [--sizes 10000,100000,1000000] [--dimension 256] [--batch 1000]
       [--commits 5] [--search-size 200000] [--queries 200]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.index import segments
from retrieval.index.segment_merge import merged_index
from retrieval.index.segments import write_index
from retrieval.index.stores import STORES
from retrieval.index.stores import faiss as faiss_store
from retrieval.settings import IndexSettings
from retrieval.testing.vectors import unit_mixture

ENTRY = STORES.get("faiss")
MAPPED_MIN_VECTORS = faiss_store.MAPPED_MIN_VECTORS
SETTINGS = IndexSettings(embedder="resnet50", objects="whole", weights="random")


def filled_store(folder: Path, vectors: np.ndarray):
    """A store in ``folder`` holding ``vectors`` (ids 0..N-1), committed as generation 1."""
    folder.mkdir(parents=True)
    store = ENTRY.create(SETTINGS, vectors.shape[1])
    store.save(folder, 0)
    store.add(np.arange(len(vectors)), vectors)
    store.save(folder, 1)
    ENTRY.discard(folder, 1)
    return store


def commit_costs(folder: Path, size: int, dimension: int, batch: int, commits: int) -> dict:
    """Seconds and bytes of each commit of ``batch`` new vectors into a store of ``size``."""
    store = filled_store(folder, unit_mixture(size, dimension, 1000, seed=1))
    seconds, written = [], []
    for commit in range(commits):
        store.add(np.arange(size + commit * batch, size + (commit + 1) * batch),
                  unit_mixture(batch, dimension, 1000, seed=100 + commit))
        before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
        started = time.perf_counter()
        store.save(folder, commit + 2)
        ENTRY.discard(folder, commit + 2)
        seconds.append(time.perf_counter() - started)
        new = [path for path in folder.iterdir() if before.get(path.name) != path.stat().st_mtime_ns]
        written.append(sum(path.stat().st_size for path in new))
    names = [segment.name for segment in store.segments]
    index, _ = merged_index(folder, names, store.trained, store.plan, dimension, np.zeros(0, np.int64))
    whole = folder / "whole.faiss"
    started = time.perf_counter()
    write_index(whole, index, shared_quantizer=False)  # every vector, quantizer included: what a commit wrote before
    whole_seconds = time.perf_counter() - started
    return {"kind": store.plan.kind, "seconds": float(np.median(seconds)), "bytes": float(np.median(written)),
            "whole_bytes": whole.stat().st_size, "whole_seconds": whole_seconds}


def search_latency(root: Path, vectors: np.ndarray, parts: int, queries: np.ndarray, mapped: bool) -> tuple[float, str]:
    """Mean seconds of one query (top 100) over ``vectors`` cut into ``parts`` segments, and the kind; with
    ``mapped``, every segment is mapped and searched on its own (not only those of ``MAPPED_MIN_VECTORS``)."""
    faiss_store.MAPPED_MIN_VECTORS = 0 if mapped else MAPPED_MIN_VECTORS
    folder = root / f"parts-{parts}-{mapped}"
    first = len(vectors) - (parts - 1) * 1000 if parts > 1 else len(vectors)
    store = filled_store(folder, vectors[:first])  # trained on the bulk, then one segment per later commit
    for part in range(parts - 1):
        start = first + part * 1000
        store.add(np.arange(start, start + 1000), vectors[start:start + 1000])
        store.save(folder, part + 2)
    reader = ENTRY.load(folder, max(parts, 1), store.describe(), SETTINGS)
    assert len(reader.segments) == parts, (len(reader.segments), parts)
    for query in queries[:20]:  # warm up
        reader.search(query[None], 100)
    started = time.perf_counter()
    for query in queries:
        reader.search(query[None], 100)
    return (time.perf_counter() - started) / len(queries), reader.plan.kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=5)
    parser.add_argument("--search-size", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    segments.MERGE_FACTOR = 1_000  # measure commits and searches without background merges
    root = Path(tempfile.mkdtemp(prefix="segments-bench-"))
    try:
        sizes = [int(value) for value in args.sizes.split(",") if value]  # --sizes "": searches only
        print(f"commit of {args.batch} new vectors (d={args.dimension}), median of {args.commits}:")
        print(f"{'store':>10} {'kind':>5} {'s/commit':>9} {'bytes/commit':>13} {'whole file':>12} {'s to write it':>14}")
        for size in sizes:
            cost = commit_costs(root / f"commits-{size}", size, args.dimension, args.batch, args.commits)
            print(f"{size:>10,} {cost['kind']:>5} {cost['seconds']:>9.4f} {cost['bytes']:>13,.0f} "
                  f"{cost['whole_bytes']:>12,} {cost['whole_seconds']:>14.3f}")
            shutil.rmtree(root / f"commits-{size}")
        vectors = unit_mixture(args.search_size, args.dimension, 1000, seed=2)
        queries = unit_mixture(args.queries, args.dimension, 1000, seed=3)
        print(f"\nsearch latency, {args.search_size:,} vectors, one query at a time, top 100:")
        single, kind = search_latency(root, vectors, 1, queries, mapped=True)
        print(f"{'segments':>9} {'kind':>5} {'read as':>22} {'ms/query':>9} {'vs one':>7}")
        print(f"{1:>9} {kind:>5} {'one mapped':>22} {single * 1000:>9.2f} {1.0:>7.2f}")
        for parts in (10, 50):
            for mapped, how in ((False, "small ones merged"), (True, "all mapped, stacked")):
                latency, kind = search_latency(root, vectors, parts, queries, mapped)
                print(f"{parts:>9} {kind:>5} {how:>22} {latency * 1000:>9.2f} {latency / single:>7.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
