"""Boxes: parsing and validation (mapping into a detector's resized frame: ``models/detectors/frames.py``).

Outside the model code a box is always ``(x1, y1, x2, y2)`` in original image
pixels (after EXIF orientation), with ``0 <= x1 < x2 <= width`` and
``0 <= y1 < y2 <= height``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import BoxError


def parse_box(
    text: str, width: int | None = None, height: int | None = None
) -> tuple[float, float, float, float]:
    """Parse ``"x1,y1,x2,y2"`` (commas, optional spaces) into four floats.

    With the image's ``width`` and ``height`` (original pixels) the box is also checked against the image
    (``validate_box``), and every error names the image size.
    """
    parts = [part.strip() for part in text.split(",")]
    within = f" within the {width}x{height} image" if width is not None and height is not None else ""
    if len(parts) != 4:
        raise BoxError(f"box {text!r} must be four numbers x1,y1,x2,y2{within} (got {len(parts)} values)")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise BoxError(f"box {text!r} must be four numbers x1,y1,x2,y2{within}") from None
    if within:
        return validate_box(values, width, height)
    return values  # type: ignore[return-value]


def validate_box(box: Sequence[float], width: int, height: int, name: str = "box") -> tuple[float, float, float, float]:
    """Check that ``box`` is a real box inside a ``width`` x ``height`` image.

    Raises ``BoxError`` with the box, the image size and what is wrong.
    Returns the box as a tuple of four floats.
    """
    size = f"{width}x{height}"
    if len(box) != 4:
        raise BoxError(f"{name} {list(box)} must have four numbers x1,y1,x2,y2 within the {size} image")
    x1, y1, x2, y2 = (float(v) for v in box)
    shown = f"{name} {_fmt(x1)},{_fmt(y1)},{_fmt(x2)},{_fmt(y2)}"
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise BoxError(f"{shown} has a value that is not a finite number (the image is {size})")
    if x2 <= x1 or y2 <= y1:
        raise BoxError(f"{shown} has zero or negative area in the {size} image: need x1 < x2 and y1 < y2")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise BoxError(
            f"{shown} lies outside the {size} image: need 0 <= x1 < x2 <= {width}, 0 <= y1 < y2 <= {height}"
        )
    return x1, y1, x2, y2


def whole_image_box(width: int, height: int) -> np.ndarray:
    """The ``(1, 4)`` float32 box covering a whole ``width`` x ``height`` image."""
    return np.array([[0.0, 0.0, float(width), float(height)]], dtype=np.float32)


def _fmt(value: float) -> str:
    return f"{value:g}"
