"""``retrieval detect VIDEO_OR_STREAM``: detect objects on a video file, a stream URL or a camera, frame by frame.

Outputs in ``out``:

- ``annotated.mp4`` (OpenCV ``VideoWriter``, mp4v): every frame read, at the size of the first frame and
  the source's frame rate, with the boxes, labels and scores of the latest detection drawn (with
  ``--every N`` the frames between two detections show the last one's boxes) and the measured end-to-end
  frames per second in the top left corner (over the last ``RATE_WINDOW`` frames).
- ``detections.json``: ``{"info": {detector identity, source, kind, fps, width, height, frames announced,
  every, description}, "frames": [{"frame", "time" (seconds), "detected", "detections": [{"box": [x1, y1, x2, y2]
  (frame pixels), "label", "score"}]}], "summary": {...}}``, one entry per frame read (``detected`` false and
  no detections on the frames ``--every`` passes over). It is replaced atomically every ``SAVE_EVERY_SECONDS``
  (less often once one save takes long: ``save_if_due``) and at the end (``summary.complete`` says which), so a run that is killed leaves the JSON of its last
  save; the mp4 is only playable after a clean end (the end of the video, ``--max-frames``, ``--duration``
  or Ctrl-C).

The detector runs on one frame per forward, as soon as the frame is read (lowest latency; on the CPU the
detector runs one image per forward anyway, see ``FasterRCNNModel``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_text
from ..errors import RetrievalError
from ..objects import ImageObjects
from ..validation import check_int, check_output_folder, check_positive
from ..videos import VideoError
from .detect import RESULTS_NAME, DetectSettings
from .streams import StreamInfo, open_frames
from .visualize import draw_corner_text, draw_detections

VIDEO_NAME = "annotated.mp4"
SAVE_EVERY_SECONDS = 10.0
SAVE_COST_FACTOR = 20  # saves at least this many times their own duration apart (at most 5% of a run)
RATE_WINDOW = 30  # frames


@dataclass(frozen=True)
class VideoOptions:
    """Which frames to detect on (every ``every``-th, from the first) and when to stop: after ``max_frames``
    frames or ``duration`` seconds of video (``None``: at the end of the video or stream, or on Ctrl-C)."""

    every: int = 1
    max_frames: int | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        check_int("--every", self.every, low=1)
        if self.max_frames is not None:
            check_int("--max-frames", self.max_frames, low=1)
        if self.duration is not None:
            check_positive("--duration", self.duration)


@dataclass
class VideoSummary:
    """What ``detect_video`` did. ``stopped`` says what ended the run (``end`` of the video or stream,
    ``--max-frames``, ``--duration``, ``Ctrl-C``); ``broke_off`` why a file ended before its announced end."""

    source: str
    kind: str
    frames_read: int = 0
    frames_detected: int = 0
    detections: int = 0
    detector_seconds: float = 0.0
    seconds: float = 0.0
    stopped: str = "end"
    broke_off: str | None = None
    video: Path | None = None
    results: Path | None = None

    @property
    def detector_fps(self) -> float:
        """Frames detected per second of detector time (the forward passes alone)."""
        return self.frames_detected / self.detector_seconds if self.detector_seconds else 0.0

    @property
    def end_to_end_fps(self) -> float:
        """Frames read per second of the whole loop: decoding, detection, drawing and writing."""
        return self.frames_read / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        """The JSON ``summary``: the counts, the times and both rates, what stopped the run."""
        numbers = {k: v for k, v in asdict(self).items() if k not in ("source", "kind", "video", "results")}
        rounded = {k: round(numbers[k], 3) for k in ("detector_seconds", "seconds")}
        rates = {"detector_fps": round(self.detector_fps, 3), "end_to_end_fps": round(self.end_to_end_fps, 3)}
        return {**numbers, **rounded, **rates}


def detect_video(
    source: str | os.PathLike,
    out: str | os.PathLike,
    settings: DetectSettings,
    options: VideoOptions = VideoOptions(),
    progress: bool = True,
) -> VideoSummary:
    """Detect objects on every ``options.every``-th frame of ``source`` (a video file, an ``rtsp://`` or
    ``http(s)://`` URL, or a camera index such as ``"0"``); write ``annotated.mp4`` and ``detections.json``.

    The source is opened and its first frame read before ``out`` is made and the detector is built, so that
    a source that cannot be read is one ``VideoError`` (naming it and the fix) and nothing is loaded.
    """
    frames = open_frames(str(source), settings.max_pixels)
    try:
        stream = frames.frames()
        first = next(stream, None)
        if first is None:
            reason = frames.broke_off or "it holds no frame"
            raise VideoError(f"{source}: no frame could be read ({reason}); give a video that plays")
        outputs = VideoOutputs(check_output_folder("--out", out), frames.info, options.every)
        detector = settings.build()
        outputs.detector = {"architecture": detector.architecture, **detector.identity}
        summary = VideoSummary(frames.info.source, frames.info.kind)
        _run(chain([first], stream), detector, outputs, summary, options, progress)
        summary.broke_off = frames.broke_off
    finally:
        frames.close()
    outputs.close(summary)
    summary.video, summary.results = outputs.video_path, outputs.results_path
    return summary


def _run(stream, detector, outputs: "VideoOutputs", summary: VideoSummary, options: VideoOptions, progress) -> None:
    """Read, detect, draw and record each frame of ``stream`` (``(index, time, RGB)``) until it ends, an
    option stops it or Ctrl-C; the counts and times go into ``summary``."""
    total = outputs.info.frames or None
    if total and options.max_frames:
        total = min(total, options.max_frames)
    bar = tqdm(total=total, unit="frame", desc="detecting", disable=not progress, file=sys.stderr)
    latest: ImageObjects | None = None
    start = time.perf_counter()
    first_time = None
    try:
        for index, seconds, rgb in stream:
            first_time = seconds if first_time is None else first_time
            if options.duration is not None and seconds - first_time >= options.duration - 1e-9:
                summary.stopped = "--duration"
                break
            found = None
            if summary.frames_read % options.every == 0:
                tic = time.perf_counter()
                found = latest = detector.detect([rgb], with_vectors=False)[0]
                summary.detector_seconds += time.perf_counter() - tic
                summary.frames_detected += 1
                summary.detections += len(found)
            outputs.add(index, seconds, rgb, latest, found)
            summary.frames_read += 1
            bar.update()
            outputs.save_if_due(summary)
            if options.max_frames is not None and summary.frames_read >= options.max_frames:
                summary.stopped = "--max-frames"
                break
    except KeyboardInterrupt:
        summary.stopped = "Ctrl-C"
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start


class VideoOutputs:
    """``annotated.mp4`` and ``detections.json`` of one run, written as frames come (see the module)."""

    def __init__(self, out: Path, info: StreamInfo, every: int) -> None:
        self.info = info
        self.every = every
        self.detector: dict = {}
        self.video_path = out / VIDEO_NAME
        self.results_path = out / RESULTS_NAME
        self.frames: list[dict] = []
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._done: deque[float] = deque(maxlen=RATE_WINDOW)
        self._saved = time.monotonic()
        self._save_seconds = 0.0

    def add(self, index: int, seconds: float, rgb: np.ndarray, drawn: ImageObjects | None, found) -> None:
        """Write frame ``index`` (``(H, W, 3)`` uint8 RGB at ``seconds``) with ``drawn``'s boxes and the rate;
        record ``found`` (this frame's detections, ``None`` where it was not detected on)."""
        import cv2

        self._done.append(time.perf_counter())
        elapsed = self._done[-1] - self._done[0]
        rate = f"{(len(self._done) - 1) / elapsed:.1f} fps" if elapsed > 0 else "- fps"
        canvas = draw_corner_text(draw_detections(rgb, drawn) if drawn is not None else rgb.copy(), rate)
        if self._writer is None:
            self._open_writer(canvas.shape[1], canvas.shape[0])
        if (canvas.shape[1], canvas.shape[0]) != self._size:  # a stream that changed its resolution
            canvas = cv2.resize(canvas, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        rows = [] if found is None else _detection_rows(found)
        self.frames.append(
            {"frame": index, "time": round(seconds, 6), "detected": found is not None, "detections": rows}
        )

    def _open_writer(self, width: int, height: int) -> None:
        import cv2

        self._size = (width, height)
        self._writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.info.fps, self._size)
        if not self._writer.isOpened():
            raise RetrievalError(f"cannot write {self.video_path} (OpenCV's mp4v writer); check --out")

    def save_if_due(self, summary: VideoSummary) -> None:
        """Replace ``detections.json`` when ``SAVE_EVERY_SECONDS`` have passed since the last save, or
        ``SAVE_COST_FACTOR`` times the last save's own time if that is longer (a long stream's saves then take
        at most 5% of the run)."""
        if time.monotonic() - self._saved >= max(SAVE_EVERY_SECONDS, SAVE_COST_FACTOR * self._save_seconds):
            self.save(summary, complete=False)

    def save(self, summary: VideoSummary, complete: bool) -> None:
        """Replace ``detections.json`` atomically with the frames so far and ``summary``."""
        described = {"detector": self.detector, "every": self.every, "description": "retrieval detect (video)"}
        info = {**asdict(self.info), **described}
        document = {"info": info, "frames": self.frames, "summary": {**summary.to_dict(), "complete": complete}}
        started = time.monotonic()
        atomic_write_text(self.results_path, json.dumps(document, indent=None, separators=(",", ":")))
        self._saved = time.monotonic()
        self._save_seconds = self._saved - started

    def close(self, summary: VideoSummary) -> None:
        """Finish the video file and write the complete ``detections.json``."""
        if self._writer is not None:
            self._writer.release()
        self.save(summary, complete=True)


def _detection_rows(objects: ImageObjects) -> list[dict]:
    """One frame's detections as JSON rows: box in frame pixels (2 decimals), label, score."""
    return [
        {"box": [round(float(v), 2) for v in box], "label": label, "score": round(float(score), 5)}
        for box, label, score in zip(objects.boxes, objects.labels, objects.scores)
    ]
