"""Detection metrics over a set of images.

Every image gives ground truth (boxes ``(G, 4)`` and labels ``(G,)``) and predictions (boxes ``(D, 4)``,
scores ``(D,)``, labels ``(D,)``); boxes are ``x1, y1, x2, y2`` pixels, labels class numbers ``1..C``.

- ``coco_map``: COCO's bounding-box AP exactly as pycocotools' ``COCOeval`` computes it (area "all",
  100 detections per image and class): AP@[.5:.95] is the mean, over IoU thresholds 0.50:0.05:0.95, the
  101 recall points 0:0.01:1 and the classes that have ground truth, of the interpolated precision (the
  best precision at any recall at or above the point; 0 where the recall is never reached); AP@.5 the same
  at IoU 0.5 alone. Detections are matched per image and class in score order, each to the unmatched
  ground-truth box it overlaps most, if by at least the threshold.
- ``threshold_metrics``: at one IoU (0.5) and score threshold, per class and overall (summed over classes):
  true positives (the same matching), precision = TP / detections, recall = TP / ground truth,
  F1 = 2PR / (P + R), and the mean IoU of the matched pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class ImageDetections:
    """Ground truth and predictions of one image (see the module's doc for shapes and frames)."""

    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of ``x1, y1, x2, y2`` boxes (areas as width x height, as pycocotools)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a, b = a.astype(np.float64), b.astype(np.float64)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def match(ious: np.ndarray, threshold: float) -> np.ndarray:
    """For detections in score order (rows of ``ious``), the ground-truth column each one takes, or -1.

    Each detection takes the unmatched ground truth it overlaps most (the later one on a tie, as
    pycocotools), if the overlap is at least ``threshold``.
    """
    taken = np.zeros(ious.shape[1], dtype=bool)
    matched = np.full(ious.shape[0], -1)
    for d in range(ious.shape[0]):
        best, chosen = min(threshold, 1 - 1e-10), -1
        for g in range(ious.shape[1]):
            if not taken[g] and ious[d, g] >= best:
                best, chosen = ious[d, g], g
        if chosen >= 0:
            taken[chosen], matched[d] = True, chosen
    return matched


def coco_map(images: Sequence[ImageDetections], num_classes: int) -> dict:
    """``{"mAP": AP@[.5:.95], "mAP50": AP@.5, "per_class": {class: {"AP", "AP50"}}}`` (classes ``1..C``
    with ground truth; the others are left out, as pycocotools leaves them out of the mean)."""
    precision = np.full((len(IOU_THRESHOLDS), len(RECALL_POINTS), num_classes), -1.0)
    for c in range(1, num_classes + 1):
        scores, hits, positives = [], [[] for _ in IOU_THRESHOLDS], 0
        for image in images:
            gt = image.gt_boxes[image.gt_labels == c]
            mine = np.flatnonzero(image.labels == c)
            order = mine[np.argsort(-image.scores[mine], kind="mergesort")][:MAX_DETECTIONS]
            positives += len(gt)
            if not len(gt) and not len(order):
                continue
            ious = box_iou(image.boxes[order], gt)
            scores.append(image.scores[order])
            for t, threshold in enumerate(IOU_THRESHOLDS):
                hits[t].append(match(ious, threshold) >= 0)
        if positives == 0:
            continue
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-all_scores, kind="mergesort")
        for t in range(len(IOU_THRESHOLDS)):
            tp = np.concatenate(hits[t])[order] if hits[t] else np.zeros(0, dtype=bool)
            tp_sum, fp_sum = np.cumsum(tp).astype(float), np.cumsum(~tp).astype(float)
            recall = tp_sum / positives
            curve = tp_sum / (tp_sum + fp_sum + np.spacing(1))
            curve = np.maximum.accumulate(curve[::-1])[::-1] if len(curve) else curve
            points = np.searchsorted(recall, RECALL_POINTS, side="left")
            precision[t, :, c - 1] = [curve[i] if i < len(curve) else 0.0 for i in points]
    valid = precision[0, 0, :] > -1
    per_class = {
        c + 1: {"AP": float(precision[:, :, c].mean()), "AP50": float(precision[0, :, c].mean())}
        for c in np.flatnonzero(valid)
    }
    return {
        "mAP": float(precision[:, :, valid].mean()) if valid.any() else 0.0,
        "mAP50": float(precision[0, :, valid].mean()) if valid.any() else 0.0,
        "per_class": per_class,
    }


def threshold_metrics(
    images: Sequence[ImageDetections], num_classes: int, score_threshold: float, iou_threshold: float = 0.5
) -> dict:
    """``{"per_class": {class: counts and rates}, "overall": {...}}``; see the module's doc."""
    counts = np.zeros((num_classes + 1, 3), dtype=np.int64)  # detections, ground truth, true positives
    matched_ious: list[list[float]] = [[] for _ in range(num_classes + 1)]
    for image in images:
        keep = image.scores >= score_threshold
        for c in range(1, num_classes + 1):
            gt = image.gt_boxes[image.gt_labels == c]
            mine = np.flatnonzero(keep & (image.labels == c))
            order = mine[np.argsort(-image.scores[mine], kind="mergesort")]
            ious = box_iou(image.boxes[order], gt)
            taken = match(ious, iou_threshold)
            counts[c] += (len(order), len(gt), int((taken >= 0).sum()))
            matched_ious[c] += [float(ious[d, g]) for d, g in enumerate(taken) if g >= 0]
    per_class = {c: _rates(*counts[c], matched_ious[c]) for c in range(1, num_classes + 1)}
    overall = _rates(*counts[1:].sum(axis=0), [v for values in matched_ious for v in values])
    return {"per_class": per_class, "overall": overall}


def _rates(detections: int, ground_truth: int, true_positives: int, ious: list[float]) -> dict:
    """Plain Python numbers (checkpoints hold them and load with weights_only=True)."""
    detections, ground_truth, true_positives = int(detections), int(ground_truth), int(true_positives)
    precision = true_positives / detections if detections else 0.0
    recall = true_positives / ground_truth if ground_truth else 0.0
    return {
        "detections": detections,
        "ground_truth": ground_truth,
        "true_positives": true_positives,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
    }
