"""From a box to a crop embedder's square input: the context margin, then ``squash`` or ``pad``.

Coordinates are original image pixels, ``x1, y1, x2, y2``; images are ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np


def box_with_margin(box: Sequence[float], margin: float, width: int, height: int) -> tuple[float, ...]:
    """``box`` grown by ``margin`` times its width (left and right) and height (top and bottom), clipped to
    the ``width`` x ``height`` image."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return max(x1 - dx, 0.0), max(y1 - dy, 0.0), min(x2 + dx, float(width)), min(y2 + dy, float(height))


def crop_pixels(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``box``, widened outward to whole pixels and at least 1x1: ``(h, w, 3)`` uint8."""
    height, width = image.shape[:2]
    x1 = min(max(int(math.floor(box[0])), 0), width - 1)
    y1 = min(max(int(math.floor(box[1])), 0), height - 1)
    x2 = max(min(int(math.ceil(box[2])), width), x1 + 1)
    y2 = max(min(int(math.ceil(box[3])), height), y1 + 1)
    return image[y1:y2, x1:x2]


def resize(crop: np.ndarray, width: int, height: int) -> np.ndarray:
    """``crop`` resized to ``width`` x ``height``: area averaging when shrinking, bilinear when growing."""
    shrinking = crop.shape[0] > height or crop.shape[1] > width
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def squash(crop: np.ndarray, size: int) -> np.ndarray:
    """``crop`` resized to ``size`` x ``size``, aspect ratio not kept: ``(size, size, 3)`` uint8."""
    return resize(crop, size, size)


def pad(crop: np.ndarray, size: int, fill: Sequence[int]) -> np.ndarray:
    """``crop`` resized so its long side is ``size`` (aspect ratio kept) and centred on a ``size`` x ``size``
    canvas of colour ``fill`` (RGB 0-255): ``(size, size, 3)`` uint8."""
    height, width = crop.shape[:2]
    factor = size / max(height, width)
    new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resize(crop, new_width, new_height)
    return canvas


def crop_box(
    image: np.ndarray, box: Sequence[float], size: int, mode: str = "squash", margin: float = 0.0, fill=(0, 0, 0)
) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 input for ``box`` of ``image``: margin, then ``squash`` or ``pad``."""
    height, width = image.shape[:2]
    pixels = crop_pixels(image, box_with_margin(box, margin, width, height) if margin else box)
    return pad(pixels, size, fill) if mode == "pad" else squash(pixels, size)
