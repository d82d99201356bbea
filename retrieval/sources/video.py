"""Video frames as gallery items: which frames of a video are indexed, and what each is called.

A video is sampled at ``fps`` frames per second of its own time (the first frame at or after each
``k / fps`` seconds), and a sampled frame that is a near-duplicate of the last one kept is passed over:
both are shrunk to 32x32 grey thumbnails and the frame is kept only when their mean absolute difference
is at least ``min_change`` (a fraction of full scale, 0 keeps every sampled frame). Thumbnails average
sensor noise away, so a still shot costs one frame however long it lasts, while anything moving or
entering the picture keeps its frames. Sampling is deterministic: decoding the same file again picks the
same frames, which is what lets a killed run resume a video where it stopped.

A kept frame is the item ``<video path>#t=<seconds>`` (a W3C media fragment, which browsers understand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..validation import check_float
from ..videos import TIME_TOLERANCE, VideoFile, VideoFrame, rgb

DEFAULT_VIDEO_FPS = 1.0
DEFAULT_MIN_CHANGE = 0.01
THUMBNAIL_SIDE = 32
MAX_VIDEO_FPS = 240.0


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video become items: ``fps`` sampled per second, near-duplicates (thumbnail change
    below ``min_change``, a fraction in [0, 1]) passed over."""

    fps: float = DEFAULT_VIDEO_FPS
    min_change: float = DEFAULT_MIN_CHANGE

    def __post_init__(self) -> None:
        check_float("--video-fps", self.fps, low=0.001, high=MAX_VIDEO_FPS)
        check_float("--video-min-change", self.min_change, low=0.0, high=1.0)

    @property
    def signature(self) -> str:
        """What a video's stored frames were sampled with; a video stored with another is sampled again."""
        return f"video fps={self.fps:g} min_change={self.min_change:g}"


def frame_key(path: str, time: float) -> str:
    """The item key of the frame at ``time`` seconds of the video ``path`` (relative to the gallery)."""
    return f"{path}#t={time:.3f}"


def is_frame_key(key: str) -> bool:
    """True for a key ``frame_key`` makes."""
    head, separator, time = key.rpartition("#t=")
    return bool(separator and head) and time.replace(".", "", 1).isdigit()


def sampled_frames(video: VideoFile, sampling: VideoSampling) -> Iterator[VideoFrame]:
    """The frames of ``video`` that ``sampling`` keeps, in order (``video.broke_off`` says, after the last,
    whether the file ended early)."""
    interval_start = 0.0
    kept: np.ndarray | None = None
    for index, time, frame in video.frames():
        if time < interval_start - TIME_TOLERANCE:
            continue
        interval_start = (math.floor(time * sampling.fps + TIME_TOLERANCE) + 1) / sampling.fps
        pixels = rgb(frame)
        small = thumbnail(pixels)
        if kept is not None and change(kept, small) < sampling.min_change:
            continue
        kept = small
        yield VideoFrame(index, time, pixels)


def thumbnail(rgb_pixels: np.ndarray) -> np.ndarray:
    """``(32, 32)`` float32 grey thumbnail in [0, 1] of an ``(H, W, 3)`` uint8 RGB frame (area-averaged)."""
    import cv2

    grey = cv2.cvtColor(rgb_pixels, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, in [0, 1]."""
    return float(np.abs(a - b).mean())
