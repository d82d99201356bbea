#!/usr/bin/env python3
"""Whole commands as a user runs them, and the CPU's own ceiling beside the achieved rate.

commands  every figure from fresh processes, as a user runs the commands:
          start-up   seconds from just before the parent spawns ``retrieval index`` (one photo, a fresh index)
                     to the moment the first image enters the model, for roi and resnet50, with ``random``
                     weights and with ``file`` weights (state_dict files of the same seeded random models,
                     written first); beside them ``python -c "import torch"``, the floor every command pays.
          index      the whole ``retrieval index`` command on --command-images photos (random weights, score
                     threshold 0, --objects per image) against the seed-style script as a whole command
                     (``benchmark_reference.py``: imports, build, index, write the FAISS index): images/s and
                     the ratio; and the project's steady rate, from the model calls' end times.
          query      the whole ``retrieval query IMAGE --box ... --top-k 5`` command on the roi index.
ceiling   a 2048x2048 matmul (bf16 and fp32, after a warm-up, median of 5 timings of 10 multiplies,
          2·n³ FLOPs each) gives the machine's GFLOP/s, and a ceiling in images/s two ways:
          nominal    bf16 GFLOP/s ÷ torchvision's own figure for the model (``weights.meta["_ops"]``: 134.38
                     for Faster R-CNN R50-FPN; for resnet50 plus --objects × 4.09 for ResNet50). torchvision
                     counts multiply-adds there, at a smaller input than the detector gets from a 640x480
                     photo, so for roi this ceiling is about 2.6x too high.
          measured   bf16 GFLOP/s ÷ the FLOPs ``torch.utils.flop_counter.FlopCounterMode`` counts (2 per
                     multiply-add) in one forward of the plain torchvision detector on the first photo
                     (640x480 resized to 800x1067, padded to 800x1088: about 355 GFLOPs), plus for resnet50
                     --objects crops through the ResNet50 trunk at 224x224: the physical ceiling.
          Each is set beside the achieved steady images/s of the whole ``retrieval index`` command.

The start-up probe changes nothing in the product: the child runs the CLI under ``PROBE``, which wraps
``FasterRCNNModel.detect`` / ``.embed`` and ``CropEmbedder.embed`` as their modules are imported (an import
hook, so the probe itself imports no torch) to record each call's start, end and image count.

Usage: python scripts/benchmark_commands.py [--images DIR] [--command-images 24] [--startup-runs 3]
       [--objects 10] [--device cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark_common import copy_gallery, say, table

ROOT = Path(__file__).resolve().parent.parent
EMBEDDERS = ("roi", "resnet50")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
RANDOM_WEIGHTS = {embedder: ["--weights", "random", "--detector-weights", "random"] for embedder in EMBEDDERS}
PROBE_FILE, SPAWN_TIME = "RETRIEVAL_BENCH_PROBE_FILE", "RETRIEVAL_BENCH_SPAWN_TIME"
PROBE = r"""
import atexit, importlib.abc, importlib.machinery, json, os, runpy, sys, time
TARGETS = {
    "retrieval.models.detectors.faster_rcnn": ("FasterRCNNModel", ("detect", "embed")),
    "retrieval.models.crop_embedder": ("CropEmbedder", ("embed",)),
}
calls = []

def timed(method, name):
    def wrapper(self, images, *args, **kwargs):
        start = time.time()
        result = method(self, images, *args, **kwargs)
        calls.append((name, start, time.time(), len(images)))
        return result
    return wrapper

class Patcher(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            owner, methods = TARGETS[fullname]
            cls = getattr(module, owner)
            for method in methods:
                setattr(cls, method, timed(getattr(cls, method), owner + "." + method))
        spec.loader.exec_module = exec_module
        return spec

def report():
    with open(os.environ["%(file)s"], "w") as out:
        json.dump({"spawn": float(os.environ["%(spawn)s"]), "calls": calls}, out)

sys.meta_path.insert(0, Patcher())
atexit.register(report)
sys.argv = ["retrieval"] + sys.argv[1:]
runpy.run_module("retrieval.cli.main", run_name="__main__")
""" % {"file": PROBE_FILE, "spawn": SPAWN_TIME}


def main() -> None:
    """Run the commands and ceiling sections and print them (or their JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--images", default=str(ROOT / "gallery"), help="folder of photos (default: the demo's)")
    parser.add_argument("--command-images", type=int, default=24, help="photos per whole index command (cycled)")
    parser.add_argument("--startup-runs", type=int, default=3, help="fresh processes per start-up and query row")
    parser.add_argument("--objects", type=int, default=10, help="detections kept per image (--max-objects)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="--device of the commands")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    if min(args.command_images, args.startup_runs, args.objects) < 1:
        parser.error("--command-images, --startup-runs and --objects must each be at least 1")
    photos = gallery_photos(Path(args.images))
    with tempfile.TemporaryDirectory(prefix="retrieval-commands-") as scratch:
        commands = commands_report(
            photos, Path(scratch), args.command_images, args.startup_runs, args.objects, args.device
        )
        ceiling = ceiling_report(steady_rates(commands["index"]), photos[0], args.objects, args.device)
    report = {"commands": commands, "ceiling": ceiling}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_commands(commands, args.command_images, args.objects)
        print_ceiling(ceiling)


def gallery_photos(folder: Path) -> list[Path]:
    """The photos in ``folder``, sorted; exits with one line when there are none."""
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        sys.exit(f"error: {folder} holds no .jpg, .jpeg or .png images; name a folder of photos with --images")
    return photos


def commands_report(photos: list[Path], work: Path, count: int, runs: int, objects: int, device: str) -> dict:
    """The commands section: ``{"startup": rows, "index": rows, "query": [row]}``, all in fresh processes."""
    weights = {"random": RANDOM_WEIGHTS, "file": write_weights_files(work / "weights")}
    one = copy_gallery(photos, 1, work / "gallery-1")
    startup = [import_torch_row(runs)] + startup_rows(one, weights, work / "startup", runs, objects, device)
    gallery = copy_gallery(photos, count, work / f"gallery-{count}")
    index = index_rows(gallery, RANDOM_WEIGHTS, work / "index", objects, device, with_reference=True)
    query = [query_row(work / "index" / "project-roi", photos[0], runs, device)]
    return {"startup": startup, "index": index, "query": query}


def write_weights_files(folder: Path) -> dict[str, list[str]]:
    """Write the seeded random models' state_dicts (as ``--weights random`` builds them) into ``folder``.

    Returns each embedder's weights options naming them: for roi ``--weights`` and ``--detector-weights``
    both name the detector's file; for resnet50 ``--weights`` is ResNet50's.
    """
    import torch
    from torchvision.models import resnet50

    from retrieval.models.detectors.architectures import build_architecture
    from retrieval.models.names import DEFAULT_DETECTOR
    from retrieval.models.weights import seeded_init

    folder.mkdir(parents=True)
    detector, embedder = folder / "detector.pth", folder / "resnet50.pth"
    with seeded_init():
        torch.save(build_architecture(DEFAULT_DETECTOR).state_dict(), detector)
    with seeded_init():
        torch.save(resnet50(weights=None).state_dict(), embedder)
    return {
        "roi": ["--weights", str(detector), "--detector-weights", str(detector)],
        "resnet50": ["--weights", str(embedder), "--detector-weights", str(detector)],
    }


def run_probed(argv: list[str], probe_file: Path) -> dict:
    """``retrieval ARGV`` in a fresh process under ``PROBE``.

    Returns ``{"wall_s", "first_call_s", "calls"}``: wall seconds from just before the spawn to the exit,
    seconds from the spawn to the start of the first model call (``None`` if none), and each model call as
    ``[name, start, end, images]`` (``time.time()`` seconds). Exits with the command's stderr if it fails.
    """
    env = os.environ | {PROBE_FILE: str(probe_file)}
    spawn = time.time()
    env[SPAWN_TIME] = repr(spawn)
    run_checked([sys.executable, "-c", PROBE, *argv], env)
    wall = time.time() - spawn
    calls = json.loads(probe_file.read_text())["calls"]
    first = min(call[1] for call in calls) - spawn if calls else None
    return {"wall_s": wall, "first_call_s": first, "calls": calls}


def run_checked(command: list[str], env: dict | None = None) -> None:
    """Run ``command``, its output captured; exits with its stderr's end if it fails."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command[:4])} ... failed ({done.returncode}):\n{done.stderr[-2000:]}")


def steady_rate(calls: list) -> float | None:
    """Images/s after the first model call: the calls of the stage that ends each batch (the last call's
    method), their images after the first call over the time from its end to the last one's end."""
    stage = [call for call in calls if call[0] == calls[-1][0]] if calls else []
    if len(stage) < 2:
        return None
    return round(sum(call[3] for call in stage[1:]) / (stage[-1][2] - stage[0][2]), 3)


def index_argv(gallery: Path, index_dir: Path, embedder: str, weights: list[str], objects: int, device: str) -> list:
    """``retrieval index`` arguments: ``weights`` options, score threshold 0, ``objects`` per image."""
    return [
        "index", str(gallery), "--index", str(index_dir), "--embedder", embedder, *weights,
        "--score-threshold", "0", "--max-objects", str(objects), "--device", device,
    ]  # fmt: skip


def import_torch_row(runs: int) -> dict:
    """``python -c "import torch"`` in ``runs`` fresh processes: the floor of every command's start-up."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run_checked([sys.executable, "-c", "import torch"])
        seconds.append(time.perf_counter() - started)
    say(f"commands: import torch {statistics.median(seconds):.2f} s")
    return {"command": 'python -c "import torch"', "embedder": "-", "weights": "-", "runs": runs} | _spread(seconds)


def startup_rows(gallery: Path, weights: dict, work: Path, runs: int, objects: int, device: str) -> list[dict]:
    """Seconds from the spawn of ``retrieval index`` on ``gallery`` (one photo) to the first image in the
    model, ``runs`` fresh processes each with a fresh index, per embedder and weights kind."""
    work.mkdir(parents=True)
    rows = []
    for embedder in EMBEDDERS:
        for kind in ("random", "file"):
            results = []
            for run in range(runs):
                index_dir = work / f"{embedder}-{kind}-{run}"
                argv = index_argv(gallery, index_dir, embedder, weights[kind][embedder], objects, device)
                results.append(run_probed(argv, work / f"{embedder}-{kind}-{run}.json"))
            row = {"command": "retrieval index, 1 photo", "embedder": embedder, "weights": kind, "runs": runs}
            row |= _spread([result["first_call_s"] for result in results])
            row["whole_command_s"] = round(statistics.median(result["wall_s"] for result in results), 3)
            rows.append(row)
            say(f"commands: start-up {embedder} {kind} weights {row['median_s']} s to the first image")
    return rows


def index_rows(gallery: Path, weights: dict, work: Path, objects: int, device: str, with_reference: bool) -> list[dict]:
    """The whole ``retrieval index`` command on ``gallery`` per embedder (fresh index, ``weights`` options),
    and with ``with_reference`` the seed-style script as a whole command after each, with the ratio."""
    work.mkdir(parents=True)
    images = len(list(gallery.iterdir()))
    rows = []
    for embedder in EMBEDDERS:
        argv = index_argv(gallery, work / f"project-{embedder}", embedder, weights[embedder], objects, device)
        result = run_probed(argv, work / f"project-{embedder}.json")
        project = {"pipeline": "project", "embedder": embedder, "images": images} | _rates(images, result["wall_s"])
        project["first_image_s"] = round(result["first_call_s"], 2)
        project["steady_images_per_s"] = steady_rate(result["calls"])
        say(f"commands: project {embedder}, {images} images: {project['images_per_s']} images/s")
        rows.append(project)
        if with_reference:
            seconds = run_reference(embedder, gallery, work / f"reference-{embedder}.faiss", objects, device)
            rows.append({"pipeline": "reference", "embedder": embedder, "images": images} | _rates(images, seconds))
            project["vs_reference"] = round(project["images_per_s"] / rows[-1]["images_per_s"], 2)
            say(f"commands: reference {embedder}: {rows[-1]['images_per_s']} images/s")
    return rows


def run_reference(embedder: str, gallery: Path, out: Path, objects: int, device: str) -> float:
    """Wall seconds of ``benchmark_reference.py`` as a whole command (a fresh process) on ``gallery``."""
    script = Path(__file__).resolve().parent / "benchmark_reference.py"
    argv = ["--embedder", embedder, "--images", str(gallery), "--objects", str(objects), "--out", str(out)]
    started = time.perf_counter()
    run_checked([sys.executable, str(script), *argv, "--device", device])
    return time.perf_counter() - started


def query_row(index_dir: Path, image: Path, runs: int, device: str) -> dict:
    """The whole ``retrieval query`` command (the middle half of ``image`` as the box, top 5) on
    ``index_dir``, ``runs`` fresh processes: seconds, and seconds to the first model call."""
    from PIL import Image

    with Image.open(image) as photo:
        width, height = photo.size
    box = f"{width // 4},{height // 4},{3 * width // 4},{3 * height // 4}"
    argv = ["query", str(image), "--box", box, "--index", str(index_dir), "--top-k", "5", "--device", device]
    results = [run_probed(argv, index_dir.parent / f"query-{run}.json") for run in range(runs)]
    row = {"command": "retrieval query --top-k 5 (roi index)", "runs": runs}
    row |= _spread([result["wall_s"] for result in results])
    row["first_model_call_s"] = round(statistics.median(result["first_call_s"] for result in results), 3)
    say(f"commands: query {row['median_s']} s")
    return row


def steady_rates(rows: list[dict]) -> dict[str, float | None]:
    """The project rows' steady images/s by embedder."""
    return {row["embedder"]: row["steady_images_per_s"] for row in rows if row["pipeline"] == "project"}


def matmul_gflops(dtype_name: str, n: int = 2048, repeats: int = 10, timings: int = 5, device: str = "cpu") -> float:
    """GFLOP/s of an ``n``x``n`` matmul in ``dtype_name`` (2·n³ FLOPs each): after a warm-up, the median of
    ``timings`` timings of ``repeats`` multiplies."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, dtype=dtype, device=device)

    def multiplies() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    multiplies()  # warm-up
    seconds = [multiplies() for _ in range(timings)]
    return 2 * n**3 * repeats / statistics.median(seconds) / 1e9


def measured_gflops(photo: Path, objects: int) -> tuple[float, float]:
    """``(detector GFLOPs on photo, ResNet50 trunk GFLOPs per 224x224 crop)``, counted by ``FlopCounterMode``
    (2 FLOPs per multiply-add) in plain fp32 torchvision modules with the seeded random weights; the
    detector keeps ``objects`` boxes at score threshold 0, as the commands do."""
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    from retrieval.models.backbones.resnet import build_resnet50_trunk
    from retrieval.models.detectors.architectures import build_architecture
    from retrieval.models.names import DEFAULT_DETECTOR
    from retrieval.models.weights import seeded_init

    with seeded_init():
        detector = build_architecture(DEFAULT_DETECTOR).eval()
    detector.roi_heads.score_thresh, detector.roi_heads.detections_per_img = 0.0, objects
    trunk = build_resnet50_trunk("random").module.eval()
    with Image.open(photo) as image:
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255
    counts = []
    for model, inputs in ((detector, [pixels]), (trunk, torch.rand(1, 3, 224, 224))):
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(inputs)
        counts.append(counter.get_total_flops() / 1e9)
    return counts[0], counts[1]


def ceiling_report(steady: dict[str, float | None], photo: Path, objects: int, device: str = "cpu") -> dict:
    """The ceiling section: ``{"matmul": rows, "ceiling": rows}``; ``steady`` is the achieved steady
    images/s by embedder (``None`` where unknown); the matmuls run on ``device``. A ceiling row has the GFLOPs
    per image (``*_gflops``), the bf16 matmul rate over them in images/s (``*_ceiling``) and the steady rate's
    fraction of that."""
    from torchvision.models import ResNet50_Weights
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    dtypes = ("bfloat16", "float32")
    matmul = [{"dtype": d, "n": 2048, "gflop_per_s": round(matmul_gflops(d, device=device))} for d in dtypes]
    say(f"ceiling: matmul bf16 {matmul[0]['gflop_per_s']} GFLOP/s, fp32 {matmul[1]['gflop_per_s']}")
    detector, crop = measured_gflops(photo, objects)
    detector_ops = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["_ops"]
    crop_ops = ResNet50_Weights.IMAGENET1K_V1.meta["_ops"]
    nominal = {"roi": detector_ops, "resnet50": detector_ops + objects * crop_ops}
    measured = {"roi": detector, "resnet50": detector + objects * crop}
    bf16 = matmul[0]["gflop_per_s"]
    rows = []
    for embedder in EMBEDDERS:
        achieved = steady.get(embedder)
        row = {"embedder": embedder, "steady_images_per_s": achieved}
        for name, gflops in (("nominal", nominal[embedder]), ("measured", measured[embedder])):
            ceiling = bf16 / gflops
            row[f"{name}_gflops"] = round(gflops, 1)
            row[f"{name}_ceiling"] = round(ceiling, 2)
            row[f"{name}_fraction"] = f"{achieved / ceiling:.0%}" if achieved else None
        rows.append(row)
    return {"matmul": matmul, "ceiling": rows}


def print_commands(commands: dict, images: int, objects: int) -> None:
    """The commands section's three tables."""
    print("\nStart-up: seconds from the spawn of `retrieval index` (one photo, fresh index) to the first image in")
    print("the model, fresh processes (median and min of the runs); whole_command_s: the whole run")
    table(commands["startup"], ["command", "embedder", "weights", "runs", "median_s", "min_s", "whole_command_s"])
    print(f"\nWhole commands on {images} photos, {objects} objects each, random weights, score threshold 0:")
    print("`retrieval index` against the seed-style script (benchmark_reference.py) as a whole command;")
    print("steady: images/s after the first model call, from the model calls' end times")
    columns = ["pipeline", "embedder", "images", "wall_s", "images_per_s", "vs_reference", "first_image_s"]
    table(commands["index"], [*columns, "steady_images_per_s"])
    print("\nWhole `retrieval query` (image + box -> top 5), fresh processes")
    table(commands["query"], list(commands["query"][0]))


def print_ceiling(ceiling: dict) -> None:
    """The ceiling section's two tables."""
    print("\nCeiling: 2048x2048 matmul (median of 5 timings of 10 multiplies)")
    table(ceiling["matmul"], list(ceiling["matmul"][0]))
    print("ceiling: bf16 GFLOP/s / GFLOPs per image, in images/s; nominal: torchvision's GFLOPs figure (multiply-")
    print("adds, smaller input); measured: FlopCounterMode's count for this input (2 per multiply-add); steady:")
    print("images/s of the whole index command after its first model call")
    table(ceiling["ceiling"], list(ceiling["ceiling"][0]))


def _spread(seconds: list[float]) -> dict:
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3)}


def _rates(images: int, seconds: float) -> dict:
    return {"wall_s": round(seconds, 2), "images_per_s": round(images / seconds, 3)}


if __name__ == "__main__":
    main()
