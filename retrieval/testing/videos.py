"""Small synthetic videos for tests and benchmarks, written with OpenCV's ``VideoWriter``.

``write_scene_video(path, ...)`` writes a clip of a cluttered background that pans slowly (so sampled
frames differ), with one demo instance (``demo_data.make_instance``) entering at a known time and
staying, moving a little each frame. It returns the frame times and the object's box per frame, so a
test can check what indexing stored. ``write_still_video`` writes a clip whose frames do not change
(every sampled frame after the first is a near-duplicate). ``python -m retrieval.testing.videos OUT.mp4``
writes one to look at.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .demo_data import make_background, make_instance

FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
SIZE = (320, 240)  # width, height
PAN_PIXELS_PER_SECOND = 30


@dataclass(frozen=True)
class SceneVideo:
    """What ``write_scene_video`` wrote.

    Attributes:
        path: the file.
        fps: frames per second.
        frames: how many frames.
        enters_at: the time (seconds) of the first frame showing the object.
        boxes: ``frame index → [x1, y1, x2, y2]`` of the object in that frame (frame pixels), from
            ``enters_at`` on.
        sprite: ``(h, w, 3)`` uint8 RGB of the object as pasted (a query image can show it).
    """

    path: Path
    fps: float
    frames: int
    enters_at: float
    boxes: dict[int, list[int]]
    sprite: np.ndarray


def write_frames(path: Path, frames, fps: float, size: tuple[int, int] = SIZE) -> Path:
    """Write ``frames`` (an iterable of ``(H, W, 3)`` uint8 RGB, ``size`` = ``(W, H)``) as a video file whose
    codec follows the file's extension (``FOURCC``)."""
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_scene_video(
    path: str | Path,
    seconds: float = 10.0,
    fps: float = 10.0,
    enters_at: float = 4.0,
    seed: int = 0,
    instance: int = 3,
    size: tuple[int, int] = SIZE,
) -> SceneVideo:
    """A panning background with demo instance ``instance`` from ``enters_at`` seconds to the end; frames of
    ``size`` = ``(W, H)`` pixels."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = make_background(rng, (width * 2, height))
    _, sprite, mask = make_instance(rng, instance)
    scale = 0.55 * height / sprite.shape[0]
    sprite_size = (max(8, round(sprite.shape[1] * scale)), max(8, round(sprite.shape[0] * scale)))
    sprite = cv2.resize(sprite, sprite_size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), sprite_size, interpolation=cv2.INTER_NEAREST).astype(bool)
    count = round(seconds * fps)
    first = round(enters_at * fps)
    boxes: dict[int, list[int]] = {}

    def frame(number: int) -> np.ndarray:
        shift = int(number / fps * PAN_PIXELS_PER_SECOND) % width
        canvas = np.ascontiguousarray(background[:, shift : shift + width])
        if number >= first:
            x = 30 + (number - first) % 40
            y = (height - sprite_size[1]) // 2
            canvas[y : y + sprite_size[1], x : x + sprite_size[0]][mask] = sprite[mask]
            boxes[number] = [x, y, x + sprite_size[0], y + sprite_size[1]]
        return canvas

    write_frames(path, (frame(n) for n in range(count)), fps, (width, height))
    return SceneVideo(Path(path), fps, count, first / fps, boxes, sprite)


def write_still_video(path: str | Path, seconds: float = 5.0, fps: float = 10.0, seed: int = 1) -> Path:
    """A clip of one unchanging picture (every frame a near-duplicate of the first)."""
    picture = make_background(np.random.default_rng(seed), SIZE)
    return write_frames(path, (picture for _ in range(round(seconds * fps))), fps)


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut the file at ``path`` to ``fraction`` of its bytes, in place (a download that broke off)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


if __name__ == "__main__":
    print(write_scene_video(Path(sys.argv[1])))
