#!/usr/bin/env python3
"""Benchmark: ``retrieval index --engine ray`` against ``local`` on this machine (the Ray engine's overhead).

The same gallery (``--images`` copies of the demo gallery's photos) is indexed into a fresh index by the local
engine, then by the Ray engine on a local Ray cluster of this machine's CPUs (and GPUs) with each pool size
of ``--workers``. Printed per row: total seconds, seconds starting the engine and loading the models
(``load``), and images/s with and without that start. Seeded random weights; figures, not a test.

Usage: python scripts/benchmark_ray.py [--images 96] [--workers 1,2] [--embedder efficientnet_lite0]
       [--objects whole] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from retrieval import IndexSettings, build_index

ROOT = Path(__file__).resolve().parent.parent


def make_gallery(folder: Path, count: int) -> Path:
    """``count`` photos: the demo gallery's, again under other names once they run out."""
    photos = sorted((ROOT / "gallery").glob("*.jpg"))
    folder.mkdir(parents=True)
    for n in range(count):
        shutil.copy(photos[n % len(photos)], folder / f"{n:05d}-{photos[n % len(photos)].name}")
    return folder


def run(gallery: Path, index: Path, settings: IndexSettings, **engine) -> dict:
    summary = build_index(gallery, index, settings, progress=False, **engine)
    load = summary.stage_seconds["load"]
    return {
        "engine": engine.get("engine", "local") + (f" x{engine['workers']}" if "workers" in engine else ""),
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
        rows = [run(gallery, Path(scratch) / "local", settings)]
        ray.init(include_dashboard=False, logging_level="WARNING")
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append(run(gallery, Path(scratch) / f"ray-{workers}", settings, engine="ray", workers=workers))
        ray.shutdown()
    print(f"{args.images} images, {args.embedder} ({args.objects}), {args.device}")
    print(f"{'engine':<10} {'seconds':>8} {'load':>6} {'images/s':>9} {'after load':>11} {'vs local':>9}")
    for row in rows:
        ratio = row["images/s after load"] / rows[0]["images/s after load"]
        print(
            f"{row['engine']:<10} {row['seconds']:>8.1f} {row['load']:>6.1f} {row['images/s']:>9.2f} "
            f"{row['images/s after load']:>11.2f} {ratio:>8.2f}x"
        )


if __name__ == "__main__":
    main()
