#!/usr/bin/env python3
"""Benchmark: loading a large index (``Searcher`` / ``IndexSnapshot.load``) and starting ``retrieval serve``.

For each of ``--sizes`` (objects) it builds once, cached under ``--work DIR/index-<size>``, a synthetic
``ivfpq`` index written directly: ``--per-image`` objects per image (items ``img/000123.jpg``), SQLite rows
with ``executemany`` in one transaction, unit vectors with cluster structure added through the vector store
protocol in chunks of ``--chunk``, and a manifest that names ``--embedder`` with random weights (built
offline; its dimension must be ``--dimension``). Then, each in a fresh child process, it measures the wall
time and peak RSS of ``IndexSnapshot.load`` and of ``Searcher(index)`` (with one query's latency: a stored
vector, top 10 images), and the time until ``retrieval serve`` answers ``/api/health`` (its peak RSS then);
the RSS after importing the libraries (torch, faiss, the package) is printed beside the peak.

Usage: python scripts/benchmark_load.py --work DIR [--sizes 1000000,10000000] [--dimension 256]
       [--embedder timm:lcnet_050] [--per-image 10] [--chunk 500000]
Run it with another checkout on ``PYTHONPATH`` to measure that code on the same cached indexes.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np

CENTRES = 4096  # clusters of the synthetic vectors
SPREAD = 0.6  # noise around a centre, relative to the centre's norm
CHILD = r"""
import json, sys, time
import numpy as np

def peak_mib():  # VmHWM: this process's own peak (ru_maxrss keeps the parent's peak across fork and exec)
    status = open("/proc/self/status").read().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

from retrieval.index.snapshot import IndexSnapshot
from retrieval.search.searcher import Searcher
import faiss, torch
imported = peak_mib()
start = time.perf_counter()
if sys.argv[1] == "snapshot":
    snapshot = IndexSnapshot.load(sys.argv[2])
    loaded, latency = time.perf_counter() - start, None
else:
    searcher = Searcher(sys.argv[2], device="cpu")
    loaded = time.perf_counter() - start
    vector = searcher.snapshot.vectors.reconstruct(np.array([12345], dtype=np.int64))[0]
    vector /= np.linalg.norm(vector)
    searcher.search(vector, top_k=10)  # the first query warms up
    times = []
    for _ in range(5):
        begin = time.perf_counter()
        results = searcher.search(vector, top_k=10)
        times.append(time.perf_counter() - begin)
    latency = sorted(times)[2]
print(json.dumps({"load_s": loaded, "rss_mib": peak_mib(),
                  "import_mib": imported,
                  "query_ms": None if latency is None else latency * 1000}))
"""


def build(folder: Path, size: int, args) -> None:
    """Write the synthetic index of ``size`` objects into ``folder`` (once: a complete one is kept)."""
    import torch

    from retrieval.index.layout import HEAD_NAME, point
    from retrieval.index.manifest import Manifest
    from retrieval.index.metadata import connect, create_tables, write_description
    from retrieval.index.stores import STORES
    from retrieval.models import build_embedder
    from retrieval.settings import IndexSettings

    if (folder / HEAD_NAME).is_file():
        return
    settings = IndexSettings(embedder=args.embedder, objects="whole", weights="random", index_type="ivfpq")
    embedder = build_embedder(settings, torch.device("cpu"))
    if embedder.dimension != args.dimension:
        wanted = embedder.dimension
        sys.exit(f"--embedder {args.embedder} makes {wanted}-d vectors: give --dimension {wanted}")
    started = time.perf_counter()
    store = folder / "store-1"
    store.mkdir(parents=True)
    db = connect(store)
    create_tables(db)
    images = -(-size // args.per_image)
    _write_rows(db, size, images, args.per_image)
    vectors = STORES.get("faiss").create(settings, args.dimension)
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(CENTRES, args.dimension)).astype(np.float32))
    generation = 0
    for start in range(0, size, args.chunk):  # one commit per chunk, as an indexing run makes them
        count = min(args.chunk, size - start)
        chunk = centres[rng.integers(0, CENTRES, count)]
        chunk += rng.normal(scale=SPREAD / np.sqrt(args.dimension), size=chunk.shape).astype(np.float32)
        vectors.add(np.arange(start, start + count, dtype=np.int64), _unit(chunk))
        generation += 1
        vectors.save(store, generation)
        STORES.get("faiss").discard(store, generation)
        print(f"  {size}: {start + count} vectors committed ({time.perf_counter() - started:.0f} s)", flush=True)
    while vectors.merge_waiting(wait=True):
        generation += 1
        vectors.save(store, generation)
        STORES.get("faiss").discard(store, generation)
    db.execute("BEGIN")
    write_description(db, vectors.describe())
    db.execute("UPDATE state SET value = ? WHERE key = 'generation'", (generation,))
    db.execute("UPDATE state SET value = ? WHERE key = 'next_object_id'", (size,))
    db.execute("COMMIT")
    db.close()
    models = {"name": args.embedder, "dimension": embedder.dimension, "weights": embedder.identity}
    manifest = Manifest(settings, models, None, str(folder / "gallery"))
    replace(manifest, vectors=vectors.describe()).with_counts(images, size, 0).save(store)
    point(folder, HEAD_NAME, store)
    print(f"  {size}: built in {time.perf_counter() - started:.0f} s", flush=True)


def _write_rows(db, size: int, images: int, per_image: int) -> None:
    """``images`` items ``img/000123.jpg`` and ``size`` objects, ``per_image`` to an image, in one transaction."""
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO items (id, key, path, width, height, file_size, mtime_ns, sha256, status) "
        "VALUES (?, ?, ?, 640, 480, 1000, 0, '', 'indexed')",
        ((i, f"img/{i:06d}.jpg", f"img/{i:06d}.jpg") for i in range(images)),
    )
    db.executemany(
        "INSERT INTO objects (id, item_id, x1, y1, x2, y2, label, score) VALUES (?, ?, ?, ?, ?, ?, 'thing', 0.5)",
        ((i, i // per_image, 10.0 * (i % per_image), 0.0, 10.0 * (i % per_image) + 50, 60.0) for i in range(size)),
    )
    db.execute("COMMIT")


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def measure(kind: str, index: Path) -> dict:
    """``{"load_s", "rss_mib", "query_ms"}`` of ``kind`` (``snapshot`` or ``searcher``) in a fresh process."""
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(index)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{kind} on {index} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_serve(index: Path, timeout: float = 1800) -> dict:
    """``{"load_s", "rss_mib"}``: seconds until ``retrieval serve`` answers ``/api/health``, and its peak RSS."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "retrieval.cli.main", "serve", "--index", str(index), "--port", str(port)]
    start = time.perf_counter()
    server = subprocess.Popen([*command, "--device", "cpu", "--quiet"], stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as answer:
                    health = json.loads(answer.read())
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"retrieval serve on {index} exited with {server.returncode}")
                time.sleep(0.1)
        seconds = time.perf_counter() - start
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    finally:
        server.terminate()
        server.wait()
    return {"load_s": seconds, "rss_mib": peak / 1024, "import_mib": None, "objects": health["objects"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder the indexes are built in, kept")
    parser.add_argument("--sizes", default="1000000,10000000", help="objects per index, comma-separated")
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--embedder", default="timm:lcnet_050", help="named in the manifest (256-d)")
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=500_000, help="vectors generated and added at a time")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        index = args.work / f"index-{size}"
        build(index, size, args)
        files = [p for pattern in ("vectors.*", "segment.*", "trained.*", "deleted.*") for p in index.glob(f"store-*/{pattern}")]
        vector_bytes = sum(p.stat().st_size for p in files)
        for kind in ("snapshot", "searcher"):
            rows.append({"size": size, "what": kind, "vector_mib": vector_bytes / 2**20, **measure(kind, index)})
        served = measure_serve(index)
        assert served.pop("objects") == size
        rows.append({"size": size, "what": "serve", "vector_mib": vector_bytes / 2**20, "query_ms": None, **served})
    print(f"{'objects':>10} {'measured':>9} {'vectors MiB':>12} {'load s':>8} {'peak RSS MiB':>13} "
          f"{'after imports':>14} {'query ms':>9}")
    for row in rows:
        query = "" if row["query_ms"] is None else f"{row['query_ms']:.1f}"
        imported = "" if row["import_mib"] is None else f"{row['import_mib']:.0f}"
        print(
            f"{row['size']:>10} {row['what']:>9} {row['vector_mib']:>12.0f} {row['load_s']:>8.2f} "
            f"{row['rss_mib']:>13.0f} {imported:>14} {query:>9}"
        )


if __name__ == "__main__":
    main()
