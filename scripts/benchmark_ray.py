#!/usr/bin/env python3
"""Benchmark: ``retrieval index --engine ray`` against ``local`` on this machine (the Ray engine's overhead).

The same gallery (``--images`` copies of the demo gallery's photos) is indexed into a fresh index by the local
engine (with torch's default threads, then with 1 thread: a Ray CPU actor of under 2 CPUs runs 1), then by
the Ray engine on a local Ray cluster of this machine's CPUs (and GPUs) with each pool size of ``--workers``.
Printed per row: torch threads per model copy, total seconds, seconds starting the engine and loading the
models (``load``), and images/s with and without that start. Seeded random weights; figures, not a test.

Usage: python scripts/benchmark_ray.py [--images 96] [--workers 1,2] [--embedder efficientnet_lite0]
       [--objects whole] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from retrieval import IndexSettings, build_index
from retrieval.pipeline.ray_engine import pool_shape

ROOT = Path(__file__).resolve().parent.parent


def make_gallery(folder: Path, count: int) -> Path:
    """``count`` photos: the demo gallery's, again under other names once they run out."""
    photos = sorted((ROOT / "gallery").glob("*.jpg"))
    folder.mkdir(parents=True)
    for n in range(count):
        shutil.copy(photos[n % len(photos)], folder / f"{n:05d}-{photos[n % len(photos)].name}")
    return folder


def run(gallery: Path, index: Path, settings: IndexSettings, threads: int, **engine) -> dict:
    summary = build_index(gallery, index, settings, progress=False, **engine)
    load = summary.stage_seconds["load"]
    return {
        "engine": engine.get("engine", "local") + (f" x{engine['workers']}" if "workers" in engine else ""),
        "threads": threads,
        "seconds": summary.seconds,
        "load": load,
        "images/s": summary.added / summary.seconds,
        "images/s after load": summary.added / (summary.seconds - load),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--workers", default="1,2", help="Ray pool sizes, comma-separated")
    parser.add_argument("--embedder", default="efficientnet_lite0")
    parser.add_argument("--objects", default="whole")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import ray

    settings = IndexSettings(embedder=args.embedder, objects=args.objects, weights="random", device=args.device)
    with tempfile.TemporaryDirectory() as scratch:
        gallery = make_gallery(Path(scratch) / "gallery", args.images)
        rows = []
        for n, threads in enumerate((torch.get_num_threads(), 1)):
            torch.set_num_threads(threads)
            rows.append(run(gallery, Path(scratch) / f"local-{n}", settings, threads))
        ray.init(include_dashboard=False, logging_level="WARNING")
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        for n, workers in enumerate(int(w) for w in args.workers.split(",")):
            threads = pool_shape(nodes, workers, args.device != "cpu").threads
            rows.append(run(gallery, Path(scratch) / f"ray-{n}", settings, threads, engine="ray", workers=workers))
        ray.shutdown()
    print(f"{args.images} images, {args.embedder} ({args.objects}), {args.device}")
    print(f"{'engine':<10} {'threads':>7} {'seconds':>8} {'load':>6} {'images/s':>9} {'after load':>11}")
    for row in rows:
        print(
            f"{row['engine']:<10} {row['threads']:>7} {row['seconds']:>8.1f} {row['load']:>6.1f} "
            f"{row['images/s']:>9.2f} {row['images/s after load']:>11.2f}"
        )


if __name__ == "__main__":
    main()
