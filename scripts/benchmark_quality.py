#!/usr/bin/env python3
"""Retrieval quality on real photos: ../shared/data/grocery's val photos (296 phone photos, 60 of its 81 classes).

Two protocols (``retrieval/testing/grocery.py``): each class's iconic catalogue image as the query (studio
packshot → phone photos in a shop), and each photo as the query against the others (itself junk). mAP, P@1
and recall@10 per configuration: random weights, the pretrained ``efficientnet_lite0`` with each pooling,
multi-scale, PCA whitening, α-QE and DBA, and the larger Lite1 and Lite2; and, on a tall centred box of each
photo and query (the images are square, so only such a box shows them), the crop variants: squash, pad and a
context margin.

Each gallery photo is one object (``--objects whole``); an index is built once per set of vector settings,
and the whitening and DBA rows re-derive the searched vectors of a copy of it (no re-embedding).

Usage: python scripts/benchmark_quality.py [--grocery DIR] [--json]   (also: benchmark.py --sections quality)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from retrieval import IndexSettings, Searcher, build_index
from retrieval.search.rerank import Rerank
from retrieval.testing.grocery import (
    box_objects,
    iconic_protocol,
    iconic_ranker,
    load_grocery,
    photo_protocol,
    photo_ranker,
)

ROOT = Path(__file__).resolve().parent.parent
GROCERY = ROOT.parent / "shared" / "data" / "grocery"
LITE0 = {"embedder": "efficientnet_lite0"}
TALL = (0.5, 0.9)  # a centred box half as wide as the photo and 90% as tall


@dataclass(frozen=True)
class Config:
    """One row: index settings, a query re-ranking, and the object box.

    ``box``: ``None`` for the whole photo, else ``(width, height)`` fractions of a centred box used as the
    gallery object and as the query box (the photos and catalogue images are all square, so only a box that
    is not shows what ``--crop pad`` and ``--margin`` do).
    """

    name: str
    settings: dict
    rerank: Rerank = field(default_factory=Rerank)
    box: tuple[float, float] | None = None

    @property
    def vectors_key(self) -> str:
        """Rows with equal stored vectors share one embedding pass."""
        values = {k: v for k, v in self.settings.items() if k not in ("whiten", "dba")}
        return json.dumps([values, self.box], sort_keys=True)


CONFIGS = (
    Config("efficientnet_lite0, random weights", {**LITE0, "weights": "random"}),
    Config("efficientnet_lite0, GAP", LITE0),
    Config("efficientnet_lite0, GeM p=3", {**LITE0, "pooling": "gem"}),
    Config("efficientnet_lite0, MAC", {**LITE0, "pooling": "mac"}),
    Config("efficientnet_lite0, GAP, scales 1,0.707,0.5", {**LITE0, "scales": (1.0, 0.707, 0.5)}),
    Config("efficientnet_lite0, GeM, scales 1,0.707,0.5", {**LITE0, "pooling": "gem", "scales": (1.0, 0.707, 0.5)}),
    Config("efficientnet_lite0, GAP, tall boxes, squash", LITE0, box=TALL),
    Config("efficientnet_lite0, GAP, tall boxes, pad", {**LITE0, "crop": "pad"}, box=TALL),
    Config("efficientnet_lite0, GAP, tall boxes, squash, margin 0.1", {**LITE0, "margin": 0.1}, box=TALL),
    Config("efficientnet_lite0, GAP, tall boxes, squash, margin 0.25", {**LITE0, "margin": 0.25}, box=TALL),
    Config("efficientnet_lite0, GAP, whitened (all dims)", {**LITE0, "whiten": -1}),
    Config("efficientnet_lite0, GAP, whitened to 128", {**LITE0, "whiten": 128}),
    Config("efficientnet_lite0, GAP, α-QE k=3", LITE0, Rerank("aqe", 3)),
    Config("efficientnet_lite0, GAP, α-QE k=10", LITE0, Rerank("aqe", 10)),
    Config("efficientnet_lite0, GAP, DBA k=3", {**LITE0, "dba": 3}),
    Config("efficientnet_lite0, GAP, DBA k=3 + α-QE k=3", {**LITE0, "dba": 3}, Rerank("aqe", 3)),
    Config("efficientnet_lite1, GAP", {"embedder": "efficientnet_lite1"}),
    Config("efficientnet_lite2, GAP", {"embedder": "efficientnet_lite2"}),
)


def quality_rows(grocery: Path, work: Path, say, names: list[str] | None = None) -> list[dict]:
    """One row per configuration (all of ``CONFIGS``, or those whose name contains one of ``names``)."""
    data = load_grocery(grocery)
    work.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CONFIGS if not names or any(n in c.name for n in names)]
    built: dict[str, Path] = {}
    rows = []
    for number, config in enumerate(chosen):
        index = work / f"index-{number}"
        started = time.perf_counter()
        if config.vectors_key in built:  # copy the index of the same vectors: only the search space changes
            shutil.copytree(built[config.vectors_key], index)
        settings = IndexSettings(device="cpu", **box_objects(config.box, data, work), **config.settings)
        say(f"quality: {config.name}")
        build_index(data.gallery, index, settings, progress=False)
        built.setdefault(config.vectors_key, index)
        searcher = Searcher(index, device="cpu")
        row = {"config": config.name, "index_s": round(time.perf_counter() - started, 1)}
        row["iconic"] = iconic_protocol(data, iconic_ranker(searcher, data, config.rerank, config.box))
        row["photos"] = photo_protocol(data, photo_ranker(searcher, config.rerank))
        rows.append(row)
    return rows


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_rows(rows: list[dict]) -> None:
    """A markdown table: both protocols' mAP, P@1, recall@10."""
    print("| configuration | iconic mAP | iconic P@1 | iconic R@10 | photos mAP | photos P@1 | photos R@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        cells = [f"{row[p][m]:.3f}" for p in ("iconic", "photos") for m in ("mAP", "P@1", "R@10")]
        print(f"| {row['config']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grocery", default=str(GROCERY), help="the grocery folder (val/, val.txt, classes.csv)")
    parser.add_argument("--only", default="", help="comma-separated parts of configuration names to run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if not (Path(args.grocery) / "val.txt").is_file():
        sys.exit(f"error: no grocery photos at {args.grocery} (val.txt missing); pass --grocery DIR")
    with tempfile.TemporaryDirectory(prefix="retrieval-quality-") as scratch:
        rows = quality_rows(Path(args.grocery), Path(scratch), say, [n for n in args.only.split(",") if n])
    print(json.dumps(rows, indent=2) if args.json else "", end="")
    if not args.json:
        print_rows(rows)


if __name__ == "__main__":
    main()
