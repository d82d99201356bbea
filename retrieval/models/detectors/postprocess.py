"""Faster R-CNN's final step, torchvision's ``RoIHeads.postprocess_detections``, with an exact shortcut.

Only the ``max_objects`` best boxes that survive per-class NMS are wanted. Greedy NMS decides each
candidate from the higher-scoring ones alone, so NMS over the top ``m`` candidates (by score) keeps
exactly the survivors of full NMS that are among them: when that yields ``max_objects`` survivors they
are the answer, else ``m`` grows. With a low score threshold (tens of thousands of class-box pairs) this
skips almost all of the NMS work; the result is the same boxes, scores and labels (a test compares).
A class filter is applied before NMS, which is also exact since NMS never crosses classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

FIRST_CANDIDATES_PER_OBJECT = 8


def top_detections(
    heads: RoIHeads,
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: list[torch.Tensor],
    image_shapes: list[tuple[int, int]],
    max_objects: int,
    class_ids: torch.Tensor | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(boxes (K, 4) resized frame, scores (K,), labels (K,))`` per image, best first, K <= ``max_objects``.

    Args:
        class_logits: ``(P, C)`` for all proposals of all images; box_regression: ``(P, 4C)``.
        proposals: ``(P_i, 4)`` per image, resized frame.
        class_ids: class indices to keep (``None``: all but the background).
    """
    boxes_all = heads.box_coder.decode(box_regression, proposals)
    scores_all = F.softmax(class_logits, -1)
    per_image = [len(p) for p in proposals]
    results = []
    for boxes, scores, shape in zip(boxes_all.split(per_image), scores_all.split(per_image), image_shapes):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        labels = torch.arange(scores.shape[-1], device=scores.device).view(1, -1).expand_as(scores)
        boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        wanted = scores > heads.score_thresh
        if class_ids is not None:
            wanted &= torch.isin(labels, class_ids)
        boxes, scores, labels = boxes[wanted], scores[wanted], labels[wanted]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        count = FIRST_CANDIDATES_PER_OBJECT * max_objects
        while True:
            top = best_first(scores, count)
            kept = box_ops.batched_nms(boxes[top], scores[top], labels[top], heads.nms_thresh)
            if len(kept) >= max_objects or count >= len(scores):
                break
            count *= 4
        chosen = top[kept[:max_objects]]
        results.append((boxes[chosen], scores[chosen], labels[chosen]))
    return results


def best_first(scores: torch.Tensor, count: int) -> torch.Tensor:
    """``scores.argsort(descending=True, stable=True)[:count]`` without sorting them all: ``topk`` finds the
    ``count``-th best score, and only the scores at least that good are sorted (ties kept in index order)."""
    if count >= len(scores):
        return scores.argsort(descending=True, stable=True)
    threshold = torch.topk(scores, count, sorted=False).values.min()
    candidates = torch.nonzero(scores >= threshold).squeeze(1)
    return candidates[scores[candidates].argsort(descending=True, stable=True)][:count]
