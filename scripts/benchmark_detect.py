"""The benchmark's detect section: frames per second of each detector on a 640x480 video, as a stream is run.

A synthetic scene (``retrieval.testing.videos.write_scene_video``, 640x480, 10 fps) is decoded the way a
live stream is (OpenCV ``VideoCapture``, frame after frame, BGR to RGB) and each frame goes through
``FasterRCNNModel.detect`` alone (``retrieval detect``'s settings: score threshold 0.5, at most 20 objects),
at the detector's own input size (``models.names.INPUT_SIZES``: torchvision's). For each device (the CPU;
CUDA when there is one) and precision (fp32; bf16 where it runs fast, fp16 too on CUDA GPUs without bf16),
each detector's row: ``end_to_end_fps`` (decode + detect), ``detector_fps`` (detect only), boxes per frame.
Rates are one over the median frame time, so that another program's burst on a shared machine moves them
less than it moves a mean.

Weights: torchvision's COCO weights when they are in the torch hub cache (nothing is downloaded), else seeded
random ones (``weights`` says which). Random weights find next to nothing at threshold 0.5, so their rows
skip most of the post-processing (NMS over real detections) that trained weights pay for: compare rows by
their ``boxes_per_frame``. The first ``WARMUP_FRAMES`` frames are run but not timed.

Run it as ``python scripts/benchmark.py --sections detect [--detect-frames 40] [--device cuda]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import torch

from retrieval.models.accel.speed import cpu_has_fast_bf16
from retrieval.models.detectors.architectures import COCO_WEIGHTS
from retrieval.models.names import INPUT_SIZES
from retrieval.models.weights import weights_cache_dir
from retrieval.testing.videos import write_scene_video
from retrieval.tools.detect import DetectSettings

DETECTORS = ("resnet50_fpn", "mobilenet_v3_large_fpn", "mobilenet_v3_large_320_fpn")
VIDEO_SIZE = (640, 480)  # width, height
WARMUP_FRAMES = 3


def detect_rows(frames: int, devices: list[str], say: Callable[[str], None], detectors=DETECTORS) -> list[dict]:
    """One row per device, precision and detector (see the module docstring); ``frames`` timed per row."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval-detect-bench-") as scratch:
        seconds = (frames + WARMUP_FRAMES) / 10.0
        video = write_scene_video(
            Path(scratch) / "scene.mp4", seconds=seconds, fps=10.0, enters_at=0.5, size=VIDEO_SIZE
        )
        for device in devices:
            for precision in precisions(device):
                for detector in detectors:
                    say(f"detect: {detector} on {device}, {precision}, {frames} frames")
                    rows.append(detect_row(video.path, detector, device, precision))
    return rows


def precisions(device: str) -> list[str]:
    """fp32, and the low precision that runs fast on ``device`` (none on a CPU without fast bf16)."""
    if device == "cuda":
        return ["fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    return ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"]


def cached_weights(detector: str) -> str:
    """``default`` when torchvision's COCO weights of ``detector`` are in the hub cache, else ``random``."""
    filename = Path(COCO_WEIGHTS[detector].url).name
    return "default" if (weights_cache_dir() / filename).is_file() else "random"


def detect_row(video: Path, detector: str, device: str, precision: str) -> dict:
    """Decode ``video`` with OpenCV and detect in every frame, timing each frame's decoding and detection."""
    min_size, max_size = INPUT_SIZES[detector]
    weights = cached_weights(detector)
    settings = DetectSettings(detector, weights, min_size, max_size, device=device, precision=precision)
    model = settings.build()
    capture = cv2.VideoCapture(str(video))
    decode_s, detect_s, boxes = [], [], 0
    while True:
        started = time.perf_counter()
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        decoded = time.perf_counter()
        (found,) = model.detect([rgb], with_vectors=False)
        if device == "cuda":
            torch.cuda.synchronize()
        decode_s.append(decoded - started)
        detect_s.append(time.perf_counter() - decoded)
        boxes += len(found) if len(detect_s) > WARMUP_FRAMES else 0
    capture.release()
    decode_s, detect_s = decode_s[WARMUP_FRAMES:], detect_s[WARMUP_FRAMES:]
    counted = len(detect_s)
    frame_s = [a + b for a, b in zip(decode_s, detect_s)]
    return {
        "device": device,
        "precision": precision,
        "detector": detector,
        "input": f"{min_size}/{max_size}",
        "weights": weights,
        "frames": counted,
        "boxes_per_frame": round(boxes / counted, 1),
        "end_to_end_fps": round(1 / statistics.median(frame_s), 2),
        "detector_fps": round(1 / statistics.median(detect_s), 2),
        "decode_ms": round(1000 * statistics.median(decode_s), 1),
    }
