#!/usr/bin/env python3
"""Benchmark: indexing and query speed against a seed-style reference, fast-path agreement, vector search.

One command, every row on the same images and settings; figures printed as tables, or as JSON (--json).

  indexing   the reference pipeline (benchmark_reference.py: fp32, one image per forward, crops one by
             one) and the project's ``build_index``, for roi and resnet50: images/s, objects/s, peak RSS,
             project/reference ratio. Seeded random weights with score threshold 0 keep exactly
             --objects detections per image in both. Each row runs in a fresh process (its own peak RSS);
             model loading is not counted, the first (slow) forward is. Then the project's roi indexing
             of the same images and of three times as many, to show memory staying flat.
  agreement  the project's embeddings (its precision, fused and channels-last paths) against unmodified
             torchvision fp32 modules, for the same boxes on real photos: cosine mean and minimum.
  query      image + box -> top 10 through ``Searcher`` (models loaded once): p50 and p95 latency.
  vectors    benchmark_vectors.py: each FAISS index kind at each size and dimension.
  training   benchmark_training.py: train-detector's training step and validation, images/s per detector.
  startup    benchmark_startup.py: whole commands in fresh processes (--help, index --help, info, query),
             median seconds and which of torch, torchvision, faiss each imported.
  commands   benchmark_commands.py: start-up of ``retrieval index`` to the first image in the model (roi,
             resnet50; random and file weights) beside ``import torch``; the whole ``retrieval index`` on
             --command-images photos against the seed-style script as a whole command (images/s, ratio,
             steady rate); the whole ``retrieval query``. All in fresh processes (--startup-runs each).
  ceiling    benchmark_commands.py: bf16 and fp32 GFLOP/s of a 2048x2048 matmul, and the ceiling in images/s
             it gives, nominal (torchvision's 134 GFLOPs per image) and measured (FlopCounterMode's count),
             beside the steady rate of the commands section (whole index commands run for it without one).
  detect     benchmark_detect.py: frames/s of each detector on a 640x480 video decoded as a stream is, at its
             own input size, end to end and detector only, with boxes per frame; CPU in fp32 and bf16 (where
             fast), and CUDA in fp32 and bf16 when --device cuda.
  quality    benchmark_quality.py: retrieval quality (mAP, P@1, recall@10) on the grocery photos, two
             protocols, random and pretrained weights, poolings, multi-scale, crops, whitening, α-QE, DBA.

Usage: python scripts/benchmark.py [--sections indexing,agreement,query,vectors,training,startup,commands,ceiling,
       detect,quality] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
from benchmark_agreement import agreement_rows
from benchmark_commands import (
    RANDOM_WEIGHTS,
    ceiling_report,
    commands_report,
    index_rows,
    print_ceiling,
    print_commands,
    steady_rates,
)
from benchmark_common import copy_gallery, say, table
from benchmark_detect import detect_rows
from benchmark_quality import print_rows as print_quality
from benchmark_quality import quality_rows
from benchmark_reference import ReferenceIndexer
from benchmark_startup import startup_rows
from benchmark_training import training_rows
from benchmark_vectors import vector_rows

from retrieval import IndexSettings, Searcher, build_index
from retrieval.index.snapshot import IndexSnapshot
from retrieval.models.accel.fused import fusion_available
from retrieval.models.accel.speed import resolve_precision

GROCERY = ROOT.parent / "shared" / "data" / "grocery" / "val"
QUICK_QUALITY = ["random weights", "GAP, α-QE k=3"]  # two embedding passes: random and pretrained
SECTIONS = (
    "indexing", "agreement", "query", "vectors", "training", "startup", "commands", "ceiling", "detect", "quality"
)  # fmt: skip
EMBEDDERS = ("roi", "resnet50")


def main() -> None:
    args = parse_args()
    report = {"machine": machine(args.device, args.precision), "settings": vars(args).copy()}
    images = sorted(p for p in Path(args.images).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        sys.exit(f"error: {args.images} holds no .jpg, .jpeg or .png images; name a folder of photos with --images")
    with tempfile.TemporaryDirectory(prefix="retrieval-benchmark-") as scratch:
        work = Path(scratch)
        gallery = copy_gallery(images, args.count, work / "gallery")
        if "indexing" in args.sections:
            report["indexing"] = indexing_rows(args, gallery, work)
        if "agreement" in args.sections:
            found = sorted(Path(args.photos).glob("**/*.jpg"))
            photos = found[:: max(1, len(found) // 8)][:8]
            report["agreement"] = agreement_rows(photos or images[:8], args, say)
            where = f"{args.photos} ({len(photos)} photos)" if photos else f"{args.images} (no photos at {args.photos})"
            report["agreement_photos"] = where
        if "query" in args.sections:
            report["query"] = query_rows(args, gallery, work)
        if "vectors" in args.sections:
            report["vectors"] = vector_rows(args.vector_sizes, args.vector_dims, args.index_types, say)
        if "training" in args.sections:
            report["training"] = training_rows(args.train_images, args.min_size, args.max_size, args.device, say)
        if "startup" in args.sections:
            report["startup"] = startup_section(args, gallery, work)
        if "commands" in args.sections:
            counts = args.command_images, args.startup_runs, args.objects
            report["commands"] = commands_report(images, work / "commands", *counts, args.device)
        if "ceiling" in args.sections:
            report["ceiling"] = ceiling_section(args, images, work, report.get("commands"))
        if "detect" in args.sections:
            devices = ["cpu", "cuda"] if args.device == "cuda" else ["cpu"]
            report["detect"] = detect_rows(args.detect_frames, devices, say)
        if "quality" in args.sections:
            report["quality"] = quality_section(args, work)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--images", default=str(ROOT / "gallery"), help="folder of photos (default: the demo's)")
    parser.add_argument("--count", type=int, default=20, help="images to index per row (--images cycled if fewer)")
    parser.add_argument("--photos", default=str(GROCERY), help="real photos for the agreement section")
    parser.add_argument("--objects", type=int, default=10, help="detections kept per image")
    parser.add_argument("--min-size", type=int, default=800, help="detector input short side")
    parser.add_argument("--max-size", type=int, default=1333, help="detector input long side at most")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--queries", type=int, default=30, help="timed queries per embedder")
    parser.add_argument("--vector-sizes", default="100000,1000000", help="vector counts, comma-separated")
    parser.add_argument("--vector-dims", default="1024,2048", help="dimensions, comma-separated")
    parser.add_argument("--index-types", default="flat,hnsw,ivf,ivfpq", help="index kinds, comma-separated")
    parser.add_argument("--train-images", type=int, default=16, help="synthetic training images per detector")
    parser.add_argument("--startup-runs", type=int, default=5, help="fresh processes per start-up command")
    parser.add_argument("--command-images", type=int, default=24, help="photos per whole index command (cycled)")
    parser.add_argument("--detect-frames", type=int, default=40, help="timed video frames per detect row")
    parser.add_argument("--quick", action="store_true", help="a short run: 8 images, 10 queries, 20k vectors")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    if args.quick:
        args.count, args.queries, args.vector_sizes, args.vector_dims, args.train_images = 8, 10, "20000", "1024", 4
        args.detect_frames, args.command_images = 10, 8
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {', '.join(unknown)}: use {', '.join(SECTIONS)}")
    args.vector_sizes = [int(v) for v in args.vector_sizes.split(",")]
    args.vector_dims = [int(v) for v in args.vector_dims.split(",")]
    args.index_types = args.index_types.split(",")
    return args


def machine(device: str, precision: str) -> dict:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "fused_convolutions": device == "cpu" and fusion_available(),
        "precision": str(resolve_precision(precision, torch.device(device))).removeprefix("torch."),
    }


def detect_settings(args: argparse.Namespace, embedder: str) -> IndexSettings:
    return IndexSettings(
        embedder=embedder,
        objects="detect",
        weights="random",
        detector_weights="random",
        score_threshold=0.0,
        max_objects=args.objects,
        min_size=args.min_size,
        max_size=args.max_size,
        device=args.device,
        precision=args.precision,
    )


def indexing_rows(args: argparse.Namespace, gallery: Path, work: Path) -> list[dict]:
    """Reference and project rows for each embedder, then the project's roi at 3x the images."""
    spawn = multiprocessing.get_context("spawn")
    rows = []
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        for embedder in EMBEDDERS:
            for pipeline in ("reference", "project"):
                say(f"indexing: {pipeline} {embedder}, {args.count} images")
                index_dir = work / f"index-{embedder}"
                row = pool.apply(_index_in_child, (pipeline, embedder, args, gallery, index_dir))
                rows.append(row)
            reference, project = rows[-2], rows[-1]
            project["speedup"] = round(project["images_per_s"] / reference["images_per_s"], 2)
        larger = copy_gallery(sorted(gallery.iterdir()), 3 * args.count, work / "gallery-x3")
        say(f"indexing: project roi, {3 * args.count} images (memory growth)")
        row = pool.apply(_index_in_child, ("project", "roi", args, larger, work / "index-x3"))
        row["pipeline"] = "project (3x images)"
        rows.append(row)
    return rows


def _index_in_child(pipeline: str, embedder: str, args: argparse.Namespace, gallery: Path, index_dir: Path) -> dict:
    """One indexing row, in a fresh process: throughput without model loading, and the process's peak RSS."""
    paths = sorted(gallery.iterdir())
    if pipeline == "reference":
        device = torch.device(args.device)
        reference = ReferenceIndexer(embedder, args.min_size, args.max_size, 0.0, args.objects, device)
        started = time.perf_counter()
        _, objects = reference.index(paths)
        seconds = time.perf_counter() - started
    else:
        summary = build_index(gallery, index_dir, detect_settings(args, embedder), progress=False)
        seconds, objects = summary.seconds - summary.stage_seconds["load"], summary.objects
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "pipeline": pipeline,
        "embedder": embedder,
        "images": len(paths),
        "objects": objects,
        "seconds": round(seconds, 2),
        "images_per_s": round(len(paths) / seconds, 3),
        "objects_per_s": round(objects / seconds, 2),
        "peak_rss_mb": round(peak_mb),
    }


def query_rows(args: argparse.Namespace, gallery: Path, work: Path) -> list[dict]:
    """p50 / p95 of image + box -> top 10 with loaded models, on the indexes the indexing rows built."""
    rows = []
    for embedder in EMBEDDERS:
        index_dir = work / f"index-{embedder}"
        if not index_dir.exists():
            say(f"query: building the {embedder} index first")
            build_index(gallery, index_dir, detect_settings(args, embedder), progress=False)
        say(f"query: {embedder}, {args.queries} queries")
        searcher = Searcher(index_dir, device=args.device)
        snapshot = IndexSnapshot.load(index_dir)
        found, first_box = snapshot.objects(snapshot.vectors.ids()), {}
        for row, image_id in enumerate(found.item.tolist()):
            first_box.setdefault(image_id, found.boxes[row])
        queries = [(snapshot.absolute_path(found.items[i]), box) for i, box in sorted(first_box.items())]
        searcher.query(*queries[0], top_k=10)  # warm-up: first forward
        latencies = []
        for number in range(args.queries):
            image, box = queries[number % len(queries)]
            started = time.perf_counter()
            searcher.query(image, tuple(float(v) for v in box), top_k=10)
            latencies.append(time.perf_counter() - started)
        rows.append(
            {
                "embedder": embedder,
                "indexed_objects": int(len(snapshot.vectors)),
                "queries": len(latencies),
                "p50_ms": round(1000 * statistics.median(latencies), 1),
                "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
            }
        )
    return rows


def quality_section(args: argparse.Namespace, work: Path) -> list[dict] | str:
    """The quality rows on the grocery photos (the folder above --photos), or why there are none."""
    grocery = Path(args.photos).parent
    if not (grocery / "val.txt").is_file():
        return f"no grocery photos at {grocery} (val.txt missing)"
    return quality_rows(grocery, work / "quality", say, QUICK_QUALITY if args.quick else None)


def startup_section(args: argparse.Namespace, gallery: Path, work: Path) -> list[dict]:
    """Whole-command times on the resnet50 index the query section uses (built here if it is not there)."""
    index_dir = work / "index-resnet50"
    if not index_dir.exists():
        say("startup: building the resnet50 index first")
        build_index(gallery, index_dir, detect_settings(args, "resnet50"), progress=False)
    say(f"startup: {args.startup_runs} fresh processes per command")
    return startup_rows(index_dir, sorted(gallery.iterdir())[0], args.startup_runs, say)


def ceiling_section(args: argparse.Namespace, images: list[Path], work: Path, commands: dict | None) -> dict:
    """The ceiling beside the commands section's steady rates; without that section the whole
    ``retrieval index`` commands run here (project only) to give them."""
    if commands is None:
        say(f"ceiling: whole index commands on {args.command_images} photos for the steady rates")
        gallery = copy_gallery(images, args.command_images, work / "ceiling-gallery")
        rows = index_rows(gallery, RANDOM_WEIGHTS, work / "ceiling", args.objects, args.device, with_reference=False)
    else:
        rows = commands["index"]
    return ceiling_report(steady_rates(rows), images[0], args.objects, args.device)


def print_report(report: dict) -> None:
    m = report["machine"]
    s = report["settings"]
    print(f"machine: {m['cpu']}, {m['cores']} cores" + (f", {m['gpu']}" if m["gpu"] else ""))
    print(
        f"torch {m['torch']} ({m['torch_threads']} threads), faiss {m['faiss']}; device {s['device']}, "
        f"precision {s['precision']} -> {m['precision']}, "
        f"fused convolutions {'on' if m['fused_convolutions'] else 'off'}"
    )
    if "indexing" in report:
        print(
            f"\nIndexing {s['count']} images of {s['images']}, {s['objects']} objects each, detector input "
            f"{s['min_size']}/{s['max_size']}, random weights"
        )
        table(
            report["indexing"],
            [
                "pipeline",
                "embedder",
                "images",
                "objects",
                "seconds",
                "images_per_s",
                "objects_per_s",
                "peak_rss_mb",
                "speedup",
            ],
        )
    if "agreement" in report:
        print(f"\nAgreement with plain fp32 torchvision, same boxes, {report['agreement_photos']}")
        table(report["agreement"], list(report["agreement"][0]))
        print("  centred: cosine after subtracting the fp32 vectors' mean (random-weight vectors share a large")
        print("  common part that puts every plain cosine near 1)")
    if "query" in report:
        print("\nQuery: image + box -> top 10, models loaded")
        table(report["query"], list(report["query"][0]))
    if "vectors" in report:
        _print_vectors(report)
    if "training" in report:
        _print_training(report)
    if "startup" in report:
        print("\nStart-up: whole commands, each in a fresh process (median of the runs)")
        table(report["startup"], list(report["startup"][0]))
    if "commands" in report:
        print_commands(report["commands"], s["command_images"], s["objects"])
    if "ceiling" in report:
        print_ceiling(report["ceiling"])
    if "detect" in report:
        print("\nDetection on a 640x480 video (OpenCV decoding, one frame per detect call), each detector at its")
        print("input size; random weights find few boxes at threshold 0.5 and skip most post-processing")
        table(report["detect"], list(report["detect"][0]))
    if "quality" in report:
        print("\nRetrieval quality on the grocery photos (benchmark_quality.py)")
        if isinstance(report["quality"], str):
            print(report["quality"])
        else:
            print_quality(report["quality"])


def _print_vectors(report: dict) -> None:
    print("\nVector search (synthetic clustered unit vectors): 50 queries one at a time, then 200 in one batch;")
    print("recall@10 against exact search")
    table(
        report["vectors"],
        [
            "vectors",
            "dimension",
            "kind",
            "factory",
            "params",
            "build_s",
            "bytes_per_vector",
            "index_mb",
            "single_ms_p50",
            "single_ms_p95",
            "batch_ms_per_query",
            "recall@10",
        ],
    )


def _print_training(report: dict) -> None:
    s = report["settings"]
    print(f"\nFine-tuning speed (train-detector's step and validation), detector input {s['min_size']}/{s['max_size']}")
    table(report["training"], list(report["training"][0]))


if __name__ == "__main__":
    main()
