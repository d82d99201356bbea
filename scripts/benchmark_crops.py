#!/usr/bin/env python3
"""Crop embedders' throughput: whole photos embedded in one call after a warm-up, per embedder and precision.

Usage: python scripts/benchmark_crops.py [--photos DIR] [--count 64] [--embedders efficientnet_lite0,resnet50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from retrieval.models.registry import build_embedder
from retrieval.settings import IndexSettings

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "grocery" / "val"


def crops_per_second(embedder_name: str, precision: str, images: list[np.ndarray]) -> float:
    """Crops/s of one ``embed`` call over every image's whole-image box (random weights: speed only)."""
    settings = IndexSettings(embedder=embedder_name, weights="random", objects="whole", precision=precision)
    embedder = build_embedder(settings, torch.device("cpu"))
    boxes = [np.array([[0, 0, image.shape[1], image.shape[0]]], np.float32) for image in images]
    embedder.embed(images[:8], boxes[:8])  # warm-up
    started = time.perf_counter()
    embedder.embed(images, boxes)
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(PHOTOS), help="a folder of photos (searched recursively)")
    parser.add_argument("--count", type=int, default=64, help="photos to embed")
    parser.add_argument("--embedders", default="efficientnet_lite0,resnet50", help="comma-separated embedders")
    args = parser.parse_args()
    paths = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"error: no photos under {args.photos}; pass --photos DIR")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths[: args.count]]
    print(f"{len(images)} photos, {torch.get_num_threads()} threads")
    print("| embedder | fp32 crops/s | bf16 crops/s |\n| --- | --- | --- |")
    for name in args.embedders.split(","):
        rates = [crops_per_second(name, precision, images) for precision in ("fp32", "bf16")]
        print(f"| {name} | {rates[0]:.1f} | {rates[1]:.1f} |")


if __name__ == "__main__":
    main()
