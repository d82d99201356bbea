#!/usr/bin/env python3
"""The README's main job: index the demo gallery, query it, evaluate it.

1. Writes gallery/ and query/ with scripts/make_demo_data.py if they are missing.
2. Checks that torchvision's pretrained ResNet50 weights can be had (torch
   cache or download). If not (an offline machine), it says so and runs with
   seeded RANDOM weights, labelled as such: the run then shows that the
   pipeline works, not what trained models retrieve.
3. Runs, and prints, the real CLI commands:
   retrieval index (the gallery's annotation boxes, resnet50 crop embedder),
   retrieval query (one query image and its box; top 10 and a picture),
   retrieval evaluate (P@k, recall@10 and mAP against the ground truth).

Usage: python scripts/demo.py [--index demo-index] [--picture demo-result.jpg]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from torchvision.models import ResNet50_Weights

from retrieval.errors import WeightsError
from retrieval.models.weights import default_weights_file

from retrieval.testing.demo_data import generate

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str]) -> None:
    """Print and run one CLI command from the repository root; stop the demo if it fails."""
    print(f"\n$ {shlex.join(command)}", flush=True)
    returncode = subprocess.run(command, cwd=ROOT).returncode
    if returncode:
        sys.exit(returncode)


def choose_weights() -> str:
    try:
        path = default_weights_file(ResNet50_Weights.DEFAULT)
    except WeightsError as error:
        print(
            "\n*** Pretrained weights are not available on this machine:\n"
            f"*** {error}\n"
            "*** This demo runs with RANDOM weights instead. Every result below comes from an\n"
            "*** untrained network: it shows that the pipeline works, not what trained models retrieve.\n",
            flush=True,
        )
        return "random"
    print(f"using torchvision's pretrained {ResNet50_Weights.DEFAULT} ({path})")
    return "default"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="demo-index", help="index folder to create or update")
    parser.add_argument("--picture", default="demo-result.jpg", help="where to write the query picture")
    args = parser.parse_args()
    if not (ROOT / "gallery" / "annotations.json").is_file() or not (ROOT / "query" / "ground_truth.json").is_file():
        generate(ROOT)
    weights = choose_weights()
    first = json.loads((ROOT / "query" / "ground_truth.json").read_text())["queries"][0]
    # A second run updates the index (nothing to do); --rebuild lets the weights differ from the last run's.
    run(
        [
            "retrieval",
            "index",
            "gallery",
            "--index",
            args.index,
            "--embedder",
            "resnet50",
            "--objects",
            "annotations",
            "--annotations",
            "gallery/annotations.json",
            "--weights",
            weights,
            "--rebuild",
        ]
    )
    run(
        [
            "retrieval",
            "query",
            f"query/{first['image']}",
            "--box",
            ",".join(str(v) for v in first["box"]),
            "--index",
            args.index,
            "--top-k",
            "10",
            "--save-vis",
            args.picture,
        ]
    )
    run(["retrieval", "evaluate", "--index", args.index, "--ground-truth", "query/ground_truth.json"])
    if weights == "random":
        print("\n*** Reminder: these figures come from RANDOM weights (no pretrained weights on this machine).")


if __name__ == "__main__":
    main()
