"""The benchmark's training section: fine-tuning speed of each detector on a synthetic shapes dataset.

For each detector: one epoch of ``retrieval train-detector``'s training step (augmentation, forward with
losses, backward, SGD) over the training images, and then the validation pass, each timed; seeded random
starting weights and a tiny learning rate (the speed does not depend on the weights).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from retrieval.training.data import load_detection_data
from retrieval.training.evaluate import predict
from retrieval.training.train import TrainingImages, TrainSettings, _collate, new_model, train_one_epoch
from retrieval.testing.shapes import write_yolo_dataset

DETECTORS = ("resnet50_fpn", "mobilenet_v3_large_fpn")


def training_rows(
    images: int, min_size: int, max_size: int, device: str, progress: Callable[[str], None]
) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        data = load_detection_data(write_yolo_dataset(Path(scratch) / "data", train=images, val=max(2, images // 4)))
        for detector in DETECTORS:
            progress(f"training: {detector}, {images} images at {min_size}/{max_size}")
            settings = TrainSettings(
                detector=detector,
                weights="random",
                min_size=min_size,
                max_size=max_size,
                lr=1e-7,
                workers=0,
                device=device,
            )
            model, _ = new_model(settings, data.classes)
            model.to(device)
            optimizer = torch.optim.SGD(
                [p for p in model.parameters() if p.requires_grad], lr=settings.lr, momentum=0.9
            )
            loader = DataLoader(TrainingImages(data.train), batch_size=settings.batch_size, collate_fn=_collate)
            started = time.perf_counter()
            train_one_epoch(model, loader, optimizer, torch.device(device), 1, 1, progress=False)
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            predict(model, data.val, torch.device(device))
            val_seconds = time.perf_counter() - started
            rows.append(
                {
                    "detector": detector,
                    "train_images": len(data.train),
                    "batch_size": settings.batch_size,
                    "train_images_per_s": round(len(data.train) / train_seconds, 2),
                    "val_images_per_s": round(len(data.val) / val_seconds, 2),
                }
            )
    return rows
