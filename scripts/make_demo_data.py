#!/usr/bin/env python3
"""Write the demo gallery, queries and ground truth, deterministically.

Sixteen made-up object instances (patterned boxes, cans and labels, each with
its own colours, pattern and code) are placed at other positions and scales in
40 cluttered gallery scenes, three per scene, so each instance appears in 7 or
8 gallery images. Each query image shows one instance (at a new scale, on a new
background, beside a distractor instance) with its box in the ground truth.

Writes::

    gallery/scene_000.jpg ... scene_039.jpg    640x480 scenes
    gallery/annotations.json                   COCO boxes of every placed instance
    query/<instance>.jpg                       one query image per instance
    query/ground_truth.json                    {"queries": [{"image", "box", "positives"}]} for `retrieval evaluate`

Usage: python scripts/make_demo_data.py [--out DIR]   (default: the repository root)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retrieval.testing.demo_data import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="folder to write gallery/ and query/ into",
    )
    args = parser.parse_args()
    summary = generate(args.out)
    print(f"wrote {summary['scenes']} gallery scenes and {summary['queries']} queries under {args.out}")


if __name__ == "__main__":
    main()
