"""What ``retrieval detect`` reads in video mode: a video file, a stream URL or a camera, frame by frame.

``stream_input(inputs)`` says whether the inputs are one video (a file named like a video, an ``rtsp://``,
``rtsps://``, ``http://`` or ``https://`` URL, or a camera index such as ``0``) or images and folders.
``open_frames(source)`` opens it: a file with PyAV (``videos.VideoFile``: each frame's own timestamp), a URL
or a camera with OpenCV's ``VideoCapture`` (times from ``CAP_PROP_POS_MSEC``, counted from the first frame;
``1 / fps`` per frame where the capture gives no rising time). Frames are ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import SettingsError
from ..videos import VideoError, VideoFile, is_video_name, rgb

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
DEFAULT_FPS = 25.0  # what a capture that reports no frame rate is taken to run at
CONNECT_SECONDS = 10  # how long a URL may take to open, and then to give each frame


@dataclass(frozen=True)
class StreamInfo:
    """What is read: ``source`` as given, its ``kind`` (``file``, ``url`` or ``camera``), the frame size,
    the frame rate (``DEFAULT_FPS`` where the source gives none) and the frames it announces (0: unknown)."""

    source: str
    kind: str
    width: int
    height: int
    fps: float
    frames: int


def source_kind(given: str) -> str | None:
    """``url``, ``camera`` (a whole number ``0``, ``1``, ... that is not a path here) or ``file`` (a name
    ending like a video that is not a folder); ``None`` for anything else (an image or a folder)."""
    if given.lower().startswith(URL_SCHEMES):
        return "url"
    if re.fullmatch(r"\d+", given) and not os.path.exists(given):
        return "camera"
    if is_video_name(given) and not os.path.isdir(given):
        return "file"
    return None


def stream_input(inputs: Sequence[str | os.PathLike]) -> str | None:
    """The one video, URL or camera among ``inputs``, or ``None`` when they are all images and folders;
    ``SettingsError`` when a video comes with other inputs (one video per command)."""
    videos = [str(given) for given in inputs if source_kind(str(given))]
    if not videos:
        return None
    if len(inputs) > 1:
        raise SettingsError(
            f"{videos[0]} is a video, a stream or a camera given with {len(inputs) - 1} other inputs: "
            "detect one video per command (retrieval detect VIDEO --out DIR)"
        )
    return videos[0]


class FileFrames:
    """A video file's frames, decoded with PyAV; ``broke_off`` says why decoding ended early (else ``None``)."""

    def __init__(self, path: str, max_pixels: int) -> None:
        if not os.path.exists(path):
            raise VideoError(
                f"{path}: no such file; give a video file, a stream URL (rtsp://, http://) or a camera index"
            )
        self._video = VideoFile(path, max_pixels)
        video = self._video.info
        self.info = StreamInfo(path, "file", video.width, video.height, video.fps or DEFAULT_FPS, video.frames)

    @property
    def broke_off(self) -> str | None:
        return self._video.broke_off

    def frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(index, time in seconds, (H, W, 3) uint8 RGB)`` of every frame, in order."""
        for index, time, frame in self._video.frames():
            yield index, time, rgb(frame)

    def close(self) -> None:
        self._video.close()


class CaptureFrames:
    """A stream URL's or a camera's frames, read with OpenCV; a stream has no early end (``broke_off`` is
    ``None``): it ends when the capture gives no more frames."""

    broke_off = None

    def __init__(self, source: str, kind: str, max_pixels: int) -> None:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own lines ("Connection refused")
        if kind == "camera":
            self._capture = cv2.VideoCapture(int(source))
            failure = f"camera {source} cannot be opened; check that it is connected and free, or give another index"
        else:
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, CONNECT_SECONDS * 1000]
            timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, CONNECT_SECONDS * 1000]
            self._capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, timeouts)
            failure = f"{source}: cannot connect or no video there; check the address and that the stream is running"
        if not self._capture.isOpened():
            raise VideoError(failure)
        width, height = (int(self._capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            self._capture.release()
            raise VideoError(f"{source}: frames of {width}x{height} pixels are more than --max-pixels {max_pixels:,}")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        frames = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        usable_fps = fps if 0 < fps < 1000 else DEFAULT_FPS
        self.info = StreamInfo(source, kind, width, height, usable_fps, int(frames) if frames > 0 else 0)

    def frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(index, seconds since the first frame, (H, W, 3) uint8 RGB)`` until the capture gives no frame."""
        import cv2

        index, first_msec, last_msec, time = 0, None, -1.0, 0.0
        while True:
            ok, bgr = self._capture.read()
            if not ok:
                return
            msec = self._capture.get(cv2.CAP_PROP_POS_MSEC)
            first_msec = msec if first_msec is None else first_msec
            if index > 0:
                time = (msec - first_msec) / 1000 if msec > last_msec else time + 1 / self.info.fps
            last_msec = max(last_msec, msec)
            yield index, time, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1

    def close(self) -> None:
        self._capture.release()


def open_frames(source: str, max_pixels: int) -> FileFrames | CaptureFrames:
    """The frames of ``source`` (``source_kind`` says which reader); ``VideoError`` naming it and the fix when
    it cannot be opened (a missing, empty or unreadable file, a camera not there, a URL not answering)."""
    kind = source_kind(source) or "file"
    if kind == "file":
        return FileFrames(str(Path(source)), max_pixels)
    return CaptureFrames(source, kind, max_pixels)
