"""``retrieval train-detector``: fine-tune a torchvision Faster R-CNN on a dataset's own classes.

The detector (``--detector``) starts from COCO weights (``--weights default``), seeded random ones
(``random``) or a 91-class state_dict file; its box predictor is replaced by a new one for the dataset's
classes. SGD with momentum and weight decay; the learning rate warms up linearly over the first
``warmup_iters`` steps of the first epoch from ``lr * warmup_factor`` (torchvision's detection reference:
1000 steps from 1/1000), then is multiplied by ``gamma`` every ``step_size`` epochs (StepLR).
Augmentation: horizontal flip (boxes flipped with the image), colour jitter, and scale jitter (each batch
resized to a short side drawn from 75% to 100% of ``min_size``).

Each epoch ends with validation (``evaluate.score`` on the val split) and writes, beside ``out``:

- ``out``: the best checkpoint so far (highest val mAP@[.5:.95]);
- ``<out stem>.last.pt``: the last one, with the optimizer and scheduler states, for ``--resume``;
- ``<out stem>.log.csv`` and ``<out stem>.log.png``: losses and val metrics per epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms import v2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ..atomic import atomic_write, atomic_write_text  # noqa: E402
from ..errors import SettingsError  # noqa: E402
from ..images import load_image  # noqa: E402
from ..models.detectors.architectures import COCO_CLASSES, COCO_WEIGHTS, build_architecture, replace_predictor  # noqa: E402
from ..models.detectors.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from ..models.names import DETECTOR_NAMES, TRAINING_DEVICES  # noqa: E402
from ..models.weights import apply_weights, read_weights, seeded_init  # noqa: E402
from ..validation import (  # noqa: E402
    check_choice,
    check_float,
    check_input_size,
    check_int,
    check_output_folder,
    check_positive,
)
from .data import DetectionData, Sample, load_detection_data  # noqa: E402
from .evaluate import predict, score  # noqa: E402

log = logging.getLogger(__name__)
LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; the loader adds the epochs done to it


@dataclass(frozen=True)
class TrainSettings:
    """The training options (recorded in every checkpoint)."""

    detector: str = "resnet50_fpn"
    weights: str = "default"
    epochs: int = 10
    batch_size: int = 2
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_size: int = 0  # 0: two thirds of the epochs
    gamma: float = 0.1
    min_size: int = 800
    max_size: int = 1333
    warmup_iters: int = 1000  # first-epoch steps of linear warm-up (at most the epoch's steps - 1; 0: none)
    warmup_factor: float = 0.001  # the warm-up's first learning rate, as a fraction of lr
    score_threshold: float = 0.5  # for val precision / recall / F1
    workers: int = 2
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("--detector", self.detector, DETECTOR_NAMES)
        check_int("--epochs", self.epochs, low=1)
        check_int("--batch-size", self.batch_size, low=1)
        check_positive("--lr", self.lr)
        check_float("--momentum", self.momentum, low=0.0)
        check_float("--weight-decay", self.weight_decay, low=0.0)
        check_int("--step-size", self.step_size, low=0)
        check_positive("--gamma", self.gamma)
        check_int("--warmup-iters", self.warmup_iters, low=0)
        check_float("--warmup-factor", self.warmup_factor, 1e-6, 1.0)
        check_input_size(self.min_size, self.max_size)
        check_float("--score-threshold", self.score_threshold, 0.0, 1.0)
        check_int("--workers", self.workers, low=0)
        check_int("--seed", self.seed, 0, MAX_SEED)
        check_choice("--device", self.device, TRAINING_DEVICES)


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """``{"best", "last", "csv", "plot"}`` paths for the checkpoint path ``out``."""
    out = Path(out)
    stem = out.with_suffix("")
    return {
        "best": out,
        "last": stem.with_name(stem.name + ".last.pt"),
        "csv": stem.with_name(stem.name + ".log.csv"),
        "plot": stem.with_name(stem.name + ".log.png"),
    }


class TrainingImages(Dataset):
    """Samples as ``(image (3, H, W) float in [0, 1], {"boxes": (N, 4), "labels": (N,)})``, augmented."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.augment = v2.Compose([v2.RandomHorizontalFlip(0.5), v2.ColorJitter(0.3, 0.3, 0.3, 0.02)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        rgb = load_image(sample.path).rgb
        image = tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1).float().div(255))
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(sample.boxes), format="XYXY", canvas_size=rgb.shape[:2])
        image, boxes = self.augment(image, boxes)
        return image.as_subclass(torch.Tensor), {
            "boxes": boxes.as_subclass(torch.Tensor).reshape(-1, 4),
            "labels": torch.from_numpy(sample.labels),
        }


def check_out(out: str | os.PathLike) -> dict[str, Path]:
    """``output_paths(out)``, the folder that holds them created; ``SettingsError`` naming ``--out`` when it is
    empty, a folder, or cannot be written."""
    if not str(out).strip():
        raise SettingsError("--out is empty: give the checkpoint's path, e.g. runs/shapes.pt")
    paths = output_paths(out)
    if paths["best"].is_dir():
        raise SettingsError(f"--out {out} is a folder: give the checkpoint's file path, e.g. {Path(out) / 'best.pt'}")
    check_output_folder("--out's folder", paths["best"].parent)
    return paths


def new_model(settings: TrainSettings, classes: list[str]):
    """The detector with its starting weights (read before it is built) and a new predictor for ``classes``
    (+ background)."""
    weights = read_weights(settings.weights, COCO_WEIGHTS[settings.detector], "detector")
    with seeded_init(settings.seed):
        model = build_architecture(settings.detector, COCO_CLASSES, settings.min_size, settings.max_size)
        identity = apply_weights(model, weights)
        replace_predictor(model, len(classes) + 1)
    smallest = int(0.75 * settings.min_size)
    model.transform.min_size = tuple(range(smallest, settings.min_size, 32)) + (settings.min_size,)  # scale jitter
    return model, identity


def train_detector(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    settings: TrainSettings,
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train, validating each epoch; returns the per-epoch log rows (see the module's doc for the files)."""
    paths = check_out(out)
    data = load_detection_data(data_dir)
    device = torch.device(settings.device)
    model, identity = new_model(settings, data.classes)
    model.to(device)
    optimizer, scheduler = _optimizer(model, settings)
    history = _resume(paths["last"], model, optimizer, scheduler, settings, data) if resume else []
    loader = _loader(data, settings, epochs_done=len(history))
    best = max((row["mAP"] for row in history), default=-1.0)
    for epoch in range(len(history) + 1, settings.epochs + 1):
        started = time.perf_counter()
        warmup = warmup_schedule(optimizer, settings, len(loader)) if epoch == 1 else None
        losses = train_one_epoch(model, loader, optimizer, device, epoch, settings.epochs, progress, warmup)
        scheduler.step()
        report = score(predict(model, data.val, device), data.classes, settings.score_threshold)
        history.append(_log_row(epoch, losses, report, time.perf_counter() - started))
        log.info(
            "epoch %d/%d: loss %.4f, val mAP %.4f, mAP50 %.4f",
            epoch,
            settings.epochs,
            history[-1]["loss"],
            report["mAP"],
            report["mAP50"],
        )
        extra = {"settings": dataclasses.asdict(settings), "start_weights": identity}
        states = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        best = _save_checkpoints(paths, model, settings.detector, data.classes, history, report, best, extra, **states)
        _write_log(history, paths)
    return history


def _optimizer(model, settings: TrainSettings):
    """SGD over the trainable parameters, and the per-epoch StepLR schedule."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    step = settings.step_size or max(1, (2 * settings.epochs) // 3)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=settings.gamma)


def warmup_schedule(optimizer, settings: TrainSettings, steps_per_epoch: int):
    """The first epoch's linear warm-up, as torchvision's detection reference does it: the learning rate
    starts at ``lr * warmup_factor`` and reaches ``lr`` after ``min(warmup_iters, steps_per_epoch - 1)``
    steps (``LinearLR``, stepped after every optimizer step). ``None`` when that is 0 steps."""
    steps = min(settings.warmup_iters, steps_per_epoch - 1)
    if steps < 1:
        return None
    start = settings.lr * settings.warmup_factor
    log.info("warm-up: learning rate from %g to %g over the first %d steps", start, settings.lr, steps)
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=settings.warmup_factor, total_iters=steps)


def _loader(data: DetectionData, settings: TrainSettings, epochs_done: int) -> DataLoader:
    """The shuffled training batches, seeded by the seed and the epochs already done (so a resume differs)."""
    return DataLoader(
        TrainingImages(data.train),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(settings.seed + epochs_done),
        num_workers=settings.workers,
        collate_fn=_collate,
    )


def _log_row(epoch: int, losses: dict, report: dict, seconds: float) -> dict:
    """One epoch's row of the log: learning rates, losses, val metrics, seconds."""
    return {
        "epoch": epoch,
        **losses,
        "mAP": report["mAP"],
        "mAP50": report["mAP50"],
        **{name: report["overall"][name] for name in ("precision", "recall", "f1", "mean_iou")},
        "seconds": round(seconds, 1),
    }


def _save_checkpoints(paths, model, detector, classes, history, report, best: float, extra: dict, **states) -> float:
    """Write the last checkpoint (with the optimizer and scheduler ``states``), and the best one when this
    epoch's val mAP beats ``best``; returns the best mAP so far."""
    common = {
        "epoch": history[-1]["epoch"],
        "metrics": report["overall"] | {"mAP": report["mAP"], "mAP50": report["mAP50"]},
        **extra,
    }
    save_checkpoint(paths["last"], model, detector, classes, **common, history=history, **states)
    if report["mAP"] > best:
        save_checkpoint(paths["best"], model, detector, classes, **common)
        return report["mAP"]
    return best


def _collate(batch: list) -> tuple:
    """A batch of ``(image, target)`` pairs → ``(images, targets)``: the detector takes lists."""
    return tuple(zip(*batch))


def train_one_epoch(model, loader, optimizer, device, epoch: int, epochs: int, progress: bool, warmup=None) -> dict:
    """One pass over ``loader``, stepping ``warmup`` (a per-step lr schedule) after each optimizer step.

    Returns ``lr_start`` and ``lr`` (the learning rates of the first and the last step), the mean of each
    loss and their sum (``loss``).
    """
    model.train()
    totals = dict.fromkeys(LOSSES, 0.0)
    rates = []
    bar = tqdm(loader, unit="batch", desc=f"epoch {epoch}/{epochs}", disable=not progress, file=sys.stderr)
    for images, targets in bar:
        images = [image.to(device) for image in images]
        targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
        parts = model(images, targets)
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise SettingsError(f"the loss became {loss.item()} in epoch {epoch}: lower --lr")
        optimizer.zero_grad()
        loss.backward()
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if warmup is not None:
            warmup.step()
        for name in LOSSES:
            totals[name] += parts[name].item()
        bar.set_postfix(loss=f"{sum(totals.values()) / len(rates):.3f}")
    means = {name: value / max(len(rates), 1) for name, value in totals.items()}
    rates = rates or [optimizer.param_groups[0]["lr"]]
    return {"lr_start": rates[0], "lr": rates[-1], "loss": sum(means.values()), **means}


def _resume(last: Path, model, optimizer, scheduler, settings: TrainSettings, data: DetectionData) -> list[dict]:
    payload = read_checkpoint(last)
    if payload["detector"] != settings.detector or list(payload["classes"]) != data.classes:
        raise SettingsError(
            f"--resume: {last} holds a {payload['detector']} for classes {payload['classes']}, "
            f"not a {settings.detector} for {data.classes}"
        )
    if "optimizer" not in payload:
        raise SettingsError(f"--resume: {last} has no optimizer state (it is not a last checkpoint)")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    log.info("resuming after epoch %d of %s", payload["epoch"], last)
    return list(payload["history"])


def _write_log(history: list[dict], paths: dict[str, Path]) -> None:
    text = io.StringIO()
    columns = list(dict.fromkeys(name for row in history for name in row))  # rows resumed from older runs lack some
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(paths["csv"], text.getvalue())
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in history]
    for name in ("loss", *LOSSES):
        left.plot(epochs, [row[name] for row in history], marker="o", label=name)
    left.set(xlabel="epoch", ylabel="training loss", title="losses")
    left.legend(fontsize=8)
    for name in ("mAP", "mAP50", "precision", "recall", "f1"):
        right.plot(epochs, [row[name] for row in history], marker="o", label=name)
    right.set(xlabel="epoch", ylim=(0, 1), title="validation")
    right.legend(fontsize=8)
    figure.tight_layout()
    atomic_write(paths["plot"], lambda temp: figure.savefig(temp, format="png", dpi=100))
    plt.close(figure)
