"""Decode video files into RGB frames with exact timestamps, the way every other module sees video.

Decoding uses PyAV (FFmpeg's libraries, bundled in its wheel): each frame's time comes from its own
presentation timestamp, so variable-frame-rate phone clips get true times, and ``frame_at`` seeks to the
keyframe before a time and decodes forward to the exact frame. (OpenCV's ``VideoCapture`` reports the
requested time after a seek, not the frame's, and lands frames off; it is used only for live streams and
cameras in ``retrieval detect``.) Rotation metadata is applied, so boxes are in the frame as a player shows
it. Frames are ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .errors import ImageError

if TYPE_CHECKING:
    import av

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})
TIME_TOLERANCE = 1e-6  # seconds: two frame times closer than this are one time


class VideoError(ImageError):
    """A video file cannot be opened, holds no video stream, or breaks off before its first frame."""


def is_video_name(name: str) -> bool:
    """True when ``name`` ends in one of ``VIDEO_EXTENSIONS``, in any case."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its number in presentation order (0 = first), its time in seconds from the start
    of the stream, and its pixels, ``(H, W, 3)`` uint8 RGB."""

    index: int
    time: float
    rgb: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says: ``frames`` and ``duration`` (seconds) are 0 where it does not say."""

    width: int
    height: int
    fps: float
    frames: int
    duration: float


class VideoFile:
    """An open video file; use as a context manager. ``VideoError`` (naming the file) when it cannot be opened.

    ``frames(...)`` decodes in order; when decoding fails midway the frames before stay valid and
    ``broke_off`` says where and why (a truncated or damaged file), instead of raising.
    """

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = None) -> None:
        import av

        self.path = Path(path)
        self.broke_off: str | None = None
        if os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            raise VideoError(f"{self.path}: the file is empty (0 bytes)")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
            raise VideoError(f"{self.path}: cannot be opened as a video ({_reason(error)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: holds no video stream")
        self._stream = self._container.streams.video[0]
        self.info = _info(self._stream, self._container)
        if max_pixels is not None and self.info.width * self.info.height > max_pixels:
            self._container.close()
            raise VideoError(
                f"{self.path}: frames of {self.info.width}x{self.info.height} pixels are more than --max-pixels "
                f"{max_pixels:,}; raise --max-pixels to index it"
            )

    def __enter__(self) -> "VideoFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self, start: float = 0.0) -> Iterator[tuple[int, float, "av.VideoFrame"]]:
        """``(index, time, frame)`` of every frame from ``start`` seconds on, undecoded to RGB (``rgb(frame)``
        does that), so that frames passed over cost no colour conversion.

        ``index`` counts frames from the first of the stream only when ``start`` is 0 (after a seek it is
        -1). On a decoding error the iteration ends and ``broke_off`` holds the reason.
        """
        import av

        index = 0
        if start > 0:
            self._container.seek(int(start / self._stream.time_base), stream=self._stream, backward=True)
            index = -1
        try:
            for frame in self._container.decode(self._stream):
                time = float(frame.time) if frame.time is not None else (index * (1 / (self.info.fps or 1)))
                if time >= start - TIME_TOLERANCE:
                    yield index, time, frame
                if index >= 0:
                    index += 1
        except (av.FFmpegError, OSError) as error:
            self.broke_off = f"decoding failed at {index} frames ({_reason(error)})"
            return
        announced = self.info.frames
        if start == 0 and announced and index < announced - max(2, announced // 100):
            self.broke_off = f"the file ends after {index} of the {announced} frames its header announces (cut short?)"

    def frame_at(self, time: float) -> VideoFrame:
        """The frame nearest to ``time`` seconds (the first from half a frame before it); ``VideoError`` past
        the end."""
        half_frame = 0.5 / self.info.fps if self.info.fps else 0.0
        for _, frame_time, frame in self.frames(start=max(0.0, time - half_frame)):
            return VideoFrame(-1, frame_time, rgb(frame))
        raise VideoError(
            f"{self.path}: no frame at {time:g} s (the video lasts {self.info.duration:.1f} s); give a time within it"
        )


def rgb(frame: "av.VideoFrame") -> np.ndarray:
    """A decoded frame as ``(H, W, 3)`` uint8 RGB, turned upright by its rotation metadata."""
    pixels = frame.to_ndarray(format="rgb24")
    turns = (-int(getattr(frame, "rotation", 0) or 0) // 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _info(stream, container) -> VideoInfo:
    width, height = stream.codec_context.width, stream.codec_context.height
    rate = stream.average_rate or stream.guessed_rate
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    return VideoInfo(int(width), int(height), float(rate) if rate else 0.0, int(stream.frames or 0), duration)


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.split(":")[0].strip() if "Errno" in str(error) else text.strip()
