"""Pictures drawn with OpenCV.

- The ``--save-vis`` picture: the query on the left at twice the tile size, results in a grid of
  ``COLUMNS`` tiles to its right, best first; each tile shows the image (a video result: its frame)
  fitted into a square (aspect kept), its box, rank, score and label, and a frame's time (``mm:ss.s``).
- ``retrieval detect``'s pictures: an image with each detection's box, label and score; on a video's
  frames also the measured frame rate in the top left corner (``draw_corner_text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import ImageError, SettingsError
from ..index.pictures import picture_rgb
from ..text import clock

TILE = 220
CAPTION = 26
COLUMNS = 5
BACKGROUND = (32, 32, 32)
QUERY_COLOUR = (255, 160, 0)  # RGB
RESULT_COLOUR = (0, 220, 90)  # RGB
TEXT_COLOUR = (235, 235, 235)
GROUND_TRUTH_COLOUR = (255, 140, 0)  # RGB: ground truth in evaluate-detector's pictures


@dataclass(frozen=True)
class Tile:
    """One panel: an ``(H, W, 3)`` uint8 RGB image (``None`` when unreadable), a box in its pixels, a caption."""

    rgb: np.ndarray | None
    box: Sequence[float] | None
    caption: str


def render_results(query: Tile, results: Sequence[Tile]) -> np.ndarray:
    """Compose the picture; returns ``(H, W, 3)`` uint8 RGB."""
    rows = max(1, -(-len(results) // COLUMNS))
    height = max(2, rows) * (TILE + CAPTION)
    width = 2 * TILE + min(max(len(results), 1), COLUMNS) * TILE
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    _draw_tile(canvas, query, 0, 0, 2 * TILE + CAPTION, QUERY_COLOUR)
    for i, tile in enumerate(results):
        row, column = divmod(i, COLUMNS)
        _draw_tile(canvas, tile, row * (TILE + CAPTION), 2 * TILE + column * TILE, TILE, RESULT_COLOUR)
    return canvas


def save_picture(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W, 3)`` RGB array to ``path``; the extension picks the format (.jpg, .png, ...)."""
    path = Path(path)
    extension = path.suffix.lower()
    try:
        ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise SettingsError(f"cannot write picture {path}: use a .jpg or .png file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded.tobytes())
    except OSError as error:
        raise SettingsError(f"cannot write picture {path} ({error.strerror or error})") from None
    return path


def _draw_tile(canvas: np.ndarray, tile: Tile, top: int, left: int, size: int, colour: tuple[int, int, int]) -> None:
    """Draw ``tile`` with its caption into the ``size`` x ``size`` square at (top, left) of ``canvas``."""
    cv2.putText(
        canvas, tile.caption[:60], (left + 6, top + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA
    )
    area = size - CAPTION
    if tile.rgb is None:
        cv2.putText(
            canvas,
            "(not readable)",
            (left + 10, top + CAPTION + area // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            TEXT_COLOUR,
            1,
        )
        return
    height, width = tile.rgb.shape[:2]
    scale = min((area - 8) / width, (area - 8) / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    fitted = cv2.resize(tile.rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = top + CAPTION + (area - new_h) // 2
    x0 = left + (size - new_w) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = fitted
    if tile.box is not None:
        x1, y1, x2, y2 = (float(v) * scale for v in tile.box)
        cv2.rectangle(canvas, (x0 + round(x1), y0 + round(y1)), (x0 + round(x2) - 1, y0 + round(y2) - 1), colour, 2)


def results_picture(query_rgb: np.ndarray, query_box: Sequence[float] | None, results: Sequence) -> np.ndarray:
    """The picture for a query (``(H, W, 3)`` RGB and its box) and its ``SearchResult`` list (a frame result,
    ``time`` not ``None``: the frame at that time of its video, ``image``)."""
    height, width = query_rgb.shape[:2]
    box = query_box if query_box is not None else (0, 0, width, height)
    tiles = []
    for result in results:
        try:
            rgb = picture_rgb(result.image, result.time)
        except ImageError:
            rgb = None
        time = f" {clock(result.time)}" if result.time is not None else ""
        label = f" {result.label}" if result.label else ""
        tiles.append(Tile(rgb, result.box, f"#{result.rank} {result.score:.3f}{time}{label}"))
    return render_results(Tile(query_rgb, box, "query"), tiles)


def draw_detections(
    rgb: np.ndarray, objects, colour: tuple[int, int, int] = RESULT_COLOUR, with_scores: bool = True
) -> np.ndarray:
    """A copy of ``rgb`` (``(H, W, 3)`` uint8) with ``objects``' boxes (original pixels), labels and scores."""
    canvas = np.ascontiguousarray(rgb).copy()
    thickness = max(2, round(max(canvas.shape[:2]) / 400))
    scale = max(0.5, max(canvas.shape[:2]) / 1400)
    for box, label, score in zip(objects.boxes, objects.labels, objects.scores):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, thickness)
        caption = f"{label} {float(score):.2f}" if with_scores else str(label)
        (width, height), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y1 - height - baseline - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 6, top + height + baseline + 4), colour, -1)
        cv2.putText(
            canvas, caption, (x1 + 3, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    return canvas


def draw_corner_text(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` (``(H, W, 3)`` uint8, drawn in place and returned) with ``text`` on a dark band in its top left."""
    scale = max(0.5, max(rgb.shape[:2]) / 1000)
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(rgb, (0, 0), (width + 10, height + baseline + 8), BACKGROUND, -1)
    cv2.putText(rgb, text, (5, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, 1, cv2.LINE_AA)
    return rgb
