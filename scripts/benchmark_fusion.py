#!/usr/bin/env python3
"""Benchmark: ways to run the CPU convolutions fast, in ms per forward, against the plain eager model.

Every variant starts from the same model with its batch norms folded (``fold_batchnorms``), in the dtype
and channels-last memory indexing uses:

  plain     eager PyTorch, one op at a time (convolution, then ReLU, then add).
  private   ``fuse_convolutions``: each convolution fused with its ReLU / residual add through the private
            ``torch.ops.mkldnn._convolution_pointwise`` (what indexing runs on the CPU today).
  jit       ``torch.jit.trace`` → ``torch.jit.freeze`` → ``torch.jit.optimize_for_inference`` (public).
  compile   ``torch.compile`` (inductor) with its ``freezing`` option on, so that it may emit oneDNN fused convolutions.

Models: the ResNet50 trunk of the ``resnet50`` embedder on ``(8, 3, 224, 224)`` crops, the EfficientNet-Lite0
trunk of ``efficientnet_lite0`` on ``(32, 3, 224, 224)`` crops, and the Faster R-CNN ResNet50-FPN backbone
(trunk + FPN) on one ``(1, 3, 800, 1066)`` image; seeded random weights (speed does not depend on them).
Each variant is set up and warmed up (tracing, compiling: ``setup s``, two forwards included) before it is
timed; the median of ``--repeats`` forwards is shown, with its ratio to ``plain`` (below 1 is faster).

Usage: python scripts/benchmark_fusion.py [--dtypes bf16,fp32] [--variants plain,private,jit,compile] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Callable

import torch
from torch import nn
from torchvision.models import resnet50

from retrieval.models.accel.fused import fuse_convolutions, fusion_available
from retrieval.models.accel.speed import fold_batchnorms, to_inference_layout
from retrieval.models.backbones.efficientnet_lite_net import efficientnet_lite
from retrieval.models.detectors.architectures import build_architecture
from retrieval.models.weights import seeded_init

VARIANTS = ("plain", "private", "jit", "compile")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def resnet50_trunk() -> tuple[nn.Module, tuple[int, ...]]:
    """The embedder's trunk (fc removed: ``(N, 2048)`` out) and its batch's shape."""
    with seeded_init():
        model = resnet50(weights=None)
    model.fc = nn.Identity()
    return fold_batchnorms(model.eval()), (8, 3, 224, 224)


def detector_backbone() -> tuple[nn.Module, tuple[int, ...]]:
    """The detector's ResNet50-FPN backbone (5 levels out) and a resized image's shape."""
    with seeded_init():
        backbone = build_architecture("resnet50_fpn").backbone
    fold_batchnorms(backbone.body)
    return backbone.eval(), (1, 3, 800, 1066)


def efficientnet_lite0_trunk() -> tuple[nn.Module, tuple[int, ...]]:
    """The ``efficientnet_lite0`` embedder's trunk (``(N, 1280, 7, 7)`` out; ReLU6 fused as oneDNN's hardtanh)."""
    with seeded_init():
        model = efficientnet_lite("lite0")
    model._fc = None
    return fold_batchnorms(model.eval()), (32, 3, 224, 224)


MODELS = {
    "resnet50 224x224 b8": resnet50_trunk,
    "efficientnet_lite0 224x224 b32": efficientnet_lite0_trunk,
    "detector backbone 800x1066 b1": detector_backbone,
}


def variant(name: str, model: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
    """``model`` (already in the dtype and layout) arranged as ``name`` says; warmed up on ``example``."""
    if name == "plain":
        run = model
    elif name == "private":
        if not fusion_available():
            raise RuntimeError("this PyTorch has no torch.ops.mkldnn._convolution_pointwise")
        body = model.body if hasattr(model, "body") else model
        fuse_convolutions(body)
        run = model
    elif name == "jit":
        traced = torch.jit.trace(model, example, strict=False, check_trace=False)
        run = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    elif name == "compile":
        run = torch.compile(model, options={"freezing": True})  # weights as constants, prepacked for oneDNN
    else:
        raise ValueError(f"unknown variant {name!r}: use {', '.join(VARIANTS)}")
    for _ in range(2):
        run(example)
    return run


def median_ms(run: Callable[[torch.Tensor], object], example: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(example)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(args) -> list[dict]:
    rows = []
    for model_name, build in MODELS.items():
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            plain_ms = None
            for name in args.variants:
                model, shape = build()
                model = to_inference_layout(model, dtype)
                example = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last)
                row = {"model": model_name, "dtype": dtype_name, "variant": name}
                try:
                    with torch.inference_mode():
                        started = time.perf_counter()
                        run = variant(name, copy.deepcopy(model), example)
                        row["setup_s"] = time.perf_counter() - started
                        ms = median_ms(run, example, args.repeats)
                except Exception as error:  # a variant this PyTorch cannot run is a row saying why
                    row["note"] = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
                else:
                    plain_ms = ms if name == "plain" else plain_ms
                    row["ms"] = ms
                    row["ratio"] = ms / plain_ms if plain_ms else None
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    if "ms" not in row:
        figures = f"{'-':>9} {'-':>6} {'-':>8}  {row['note']}"
    else:
        ratio = f"{row['ratio']:6.2f}" if row["ratio"] is not None else f"{'-':>6}"
        figures = f"{row['ms']:9.1f} {ratio} {row['setup_s']:8.1f}"
    return f"{row['model']:<30} {row['dtype']:<5} {row['variant']:<8} {figures}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16,fp32", type=lambda s: s.split(","))
    parser.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; median of {args.repeats} forwards")
    print(f"{'model':<30} {'dtype':<5} {'variant':<8} {'ms':>9} {'ratio':>6} {'setup s':>8}")
    measure(args)


if __name__ == "__main__":
    main()
