"""Boxes between a detector's two frames: original image pixels and its resized input (before padding)."""

from __future__ import annotations

import torch
from torchvision.models.detection.transform import resize_boxes


def to_resized_frame(boxes: torch.Tensor, original_hw: tuple[int, int], resized_hw: tuple[int, int]) -> torch.Tensor:
    """Map ``(N, 4)`` boxes from original pixels into the detector's resized frame.

    Args:
        boxes: ``(N, 4)`` float tensor, ``x1, y1, x2, y2`` in original pixels.
        original_hw: ``(height, width)`` of the original image.
        resized_hw: ``(height, width)`` after GeneralizedRCNNTransform's resize (before padding).
    """
    return resize_boxes(boxes, list(original_hw), list(resized_hw))


def to_original_frame(boxes: torch.Tensor, resized_hw: tuple[int, int], original_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``to_resized_frame``: resized-frame ``(N, 4)`` boxes → original pixels."""
    return resize_boxes(boxes, list(resized_hw), list(original_hw))
