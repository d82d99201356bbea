"""``retrieval evaluate-detector``, and the validation pass of training: predictions of a detector on a
dataset split, scored with ``metrics.py``; optionally pictures with ground truth and predictions drawn."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from ..errors import SettingsError
from ..images import load_image
from ..models.detectors.checkpoint import model_from_checkpoint, read_checkpoint
from ..models.names import TRAINING_DEVICES
from ..objects import ImageObjects
from ..tools.visualize import GROUND_TRUTH_COLOUR, draw_detections, save_picture
from ..validation import check_choice, check_float, check_output_folder
from . import SPLITS
from .data import Sample, load_detection_data
from .metrics import ImageDetections, coco_map, threshold_metrics

EVALUATION_SCORE_THRESHOLD = 0.001  # keep nearly every detection for AP, as COCO evaluations do
EVALUATION_DETECTIONS = 100


@torch.inference_mode()
def predict(model: FasterRCNN, samples: Sequence[Sample], device: torch.device, progress: bool = False) -> list:
    """``ImageDetections`` of ``model`` (fp32, torchvision's own postprocess, up to 100 detections per image
    down to score 0.001) for each sample, with the sample's ground truth."""
    model.eval()
    heads = model.roi_heads
    saved = heads.score_thresh, heads.detections_per_img
    heads.score_thresh, heads.detections_per_img = EVALUATION_SCORE_THRESHOLD, EVALUATION_DETECTIONS
    try:
        found = []
        for sample in tqdm(samples, unit="img", desc="evaluating", disable=not progress, file=sys.stderr):
            pixels = torch.from_numpy(load_image(sample.path).rgb).permute(2, 0, 1).float().div(255).to(device)
            (output,) = model([pixels])
            found.append(
                ImageDetections(
                    gt_boxes=sample.boxes,
                    gt_labels=sample.labels,
                    boxes=output["boxes"].cpu().numpy(),
                    scores=output["scores"].cpu().numpy(),
                    labels=output["labels"].cpu().numpy(),
                )
            )
        return found
    finally:
        heads.score_thresh, heads.detections_per_img = saved


def score(detections: Sequence[ImageDetections], classes: list[str], score_threshold: float) -> dict:
    """The report: ``{"mAP", "mAP50", "overall": {...}, "per_class": {name: {...}}}`` (see metrics.py)."""
    coco = coco_map(detections, len(classes))
    counts = threshold_metrics(detections, len(classes), score_threshold)
    per_class = {
        name: {**counts["per_class"][number], **coco["per_class"].get(number, {"AP": None, "AP50": None})}
        for number, name in enumerate(classes, start=1)
    }
    return {
        "mAP": coco["mAP"],
        "mAP50": coco["mAP50"],
        "score_threshold": score_threshold,
        "iou_threshold": 0.5,
        "overall": counts["overall"],
        "per_class": per_class,
    }


def evaluate_detector(
    data_dir: str | os.PathLike,
    checkpoint: str | os.PathLike,
    split: str = "val",
    score_threshold: float = 0.5,
    device: str = "cpu",
    save_vis: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Score ``checkpoint`` on the ``split`` images of the dataset in ``data_dir``; see ``score``.

    The options are checked, and ``save_vis`` created, before the dataset and the checkpoint are read.
    """
    check_choice("--split", split, SPLITS)
    check_float("--score-threshold", score_threshold, 0.0, 1.0)
    check_choice("--device", device, TRAINING_DEVICES)
    folder = None if save_vis is None else check_output_folder("--save-vis", save_vis)
    data = load_detection_data(data_dir)
    payload = read_checkpoint(checkpoint)
    if list(payload["classes"]) != data.classes:
        raise SettingsError(
            f"checkpoint {checkpoint} knows classes {payload['classes']}, the dataset {data_dir} has {data.classes}"
        )
    torch_device = torch.device(device)
    model = model_from_checkpoint(payload, checkpoint).to(torch_device)
    samples = getattr(data, split)
    detections = predict(model, samples, torch_device, progress)
    report = {
        "checkpoint": str(checkpoint),
        "split": split,
        "images": len(samples),
        **score(detections, data.classes, score_threshold),
    }
    if folder is not None:
        _save_pictures(folder, samples, detections, data.classes, score_threshold)
    return report


def _save_pictures(folder: Path, samples, detections, classes: list[str], score_threshold: float) -> None:
    """Each image with its ground truth (orange) and its predictions at or above the threshold (green)."""
    for sample, found in zip(samples, detections):
        rgb = load_image(sample.path).rgb
        truth = ImageObjects(
            boxes=found.gt_boxes, labels=[classes[i - 1] for i in found.gt_labels], scores=np.ones(len(found.gt_labels))
        )
        keep = found.scores >= score_threshold
        predicted = ImageObjects(
            boxes=found.boxes[keep], labels=[classes[i - 1] for i in found.labels[keep]], scores=found.scores[keep]
        )
        picture = draw_detections(draw_detections(rgb, truth, GROUND_TRUTH_COLOUR, with_scores=False), predicted)
        save_picture(picture, folder / (sample.path.stem + ".jpg"))
