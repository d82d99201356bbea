#!/usr/bin/env python3
"""The README's main job: index the demo gallery, query it, evaluate it.

1. Writes gallery/ and query/ with scripts/make_demo_data.py if they are missing.
2. Chooses the embedder: torchvision's pretrained ResNet50 when its weights
   can be had (torch cache or download); otherwise (an offline machine) it says
   so and uses the pretrained EfficientNet-Lite0 whose ImageNet weights come
   with the package (``efficientnet_lite0``), so the run still shows what a
   trained network retrieves. ``--random`` runs with seeded RANDOM weights
   instead, labelled as such: that shows the pipeline works, nothing more.
3. Runs, and prints, the real CLI commands:
   retrieval index (the gallery's annotation boxes, that crop embedder),
   retrieval query (one query image and its box; top 10 and a picture),
   retrieval evaluate (P@k, recall@10 and mAP against the ground truth).

Usage: python scripts/demo.py [--index demo-index] [--picture demo-result.jpg] [--random]
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


def choose_embedder(random: bool) -> tuple[str, str]:
    """``(embedder, weights)``: ResNet50's pretrained weights where they can be had, else EfficientNet-Lite0's
    (installed with the package); seeded random ResNet50 weights with ``random``."""
    if random:
        print(
            "\n*** --random: this demo runs with RANDOM weights. Every result below comes from an untrained\n"
            "*** network: it shows that the pipeline works, not what trained models retrieve.\n",
            flush=True,
        )
        return "resnet50", "random"
    try:
        path = default_weights_file(ResNet50_Weights.DEFAULT)
    except WeightsError as error:
        print(
            "\n*** torchvision's pretrained ResNet50 weights are not available on this machine:\n"
            f"*** {error}\n"
            "*** This demo uses the pretrained EFFICIENTNET-LITE0 instead (ImageNet weights installed with\n"
            "*** the package, no download): --embedder efficientnet_lite0 --weights default.\n",
            flush=True,
        )
        return "efficientnet_lite0", "default"
    print(f"using torchvision's pretrained {ResNet50_Weights.DEFAULT} ({path})")
    return "resnet50", "default"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="demo-index", help="index folder to create or update")
    parser.add_argument("--picture", default="demo-result.jpg", help="where to write the query picture")
    parser.add_argument("--random", action="store_true", help="seeded random weights (shows the pipeline only)")
    args = parser.parse_args()
    if not (ROOT / "gallery" / "annotations.json").is_file() or not (ROOT / "query" / "ground_truth.json").is_file():
        generate(ROOT)
    embedder, weights = choose_embedder(args.random)
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
            embedder,
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
        print("\n*** Reminder: these figures come from RANDOM weights (--random).")
    else:
        print(f"\nThese figures come from the pretrained {embedder} (--embedder {embedder} --weights default).")


if __name__ == "__main__":
    main()
