"""Reader, for videos: one video file → its sampled frames as items, then ``VideoDone``; resumed where a
killed run stopped, passed over whole when unchanged.

A video's own row (``VideoDone``) is written after its last frame, so a video without one was stopped
midway: its stored frames of the same content and sampling are kept (``ForgetFile.keep``) and the video
is decoded again from the start (sampling and near-duplicate tests are deterministic) with only the
missing frames embedded, which ends equal to an uninterrupted run. A video whose content or sampling
changed is indexed again whole. Frames stream through the reader's bounded queue, so memory does not
grow with the video's length.
"""

from __future__ import annotations

from typing import Iterator

from ..errors import ImageError
from ..images import LoadedImage
from ..index.metadata import ItemState
from ..index.store import VideoRecord
from ..sources import VideoSource
from ..sources.video import VideoSampling, frame_key, sampled_frames
from .reader import ForgetFile, GalleryImage, SkippedItem, UnchangedItem, VideoDone

NOT_WITH_ANNOTATIONS = (
    "a video file: --objects annotations gives boxes for images only; index videos with --objects detect or whole"
)


def read_video(
    source: VideoSource, key: str, stored: dict[str, ItemState], sampling: VideoSampling | None, max_pixels: int
) -> Iterator[GalleryImage | UnchangedItem | SkippedItem | VideoDone | ForgetFile]:
    """The items of video ``key`` (see the module docstring); ``stored``: what the index holds of its file,
    by key; ``sampling`` ``None``: skipped, with why."""
    path = source.path_of(key)
    size = mtime = None
    try:
        size, mtime = source.fingerprint(key)
        if sampling is None:
            yield from _forgotten(path, stored, frozenset())
            yield SkippedItem(key, NOT_WITH_ANNOTATIONS, size, mtime, kind="video")
            return
        previous = stored.get(key)
        whole = previous is not None and previous.status == "indexed" and previous.source_key == sampling.signature
        if whole and (previous.file_size, previous.mtime_ns) == (size, mtime):
            yield UnchangedItem(key, whole_file=True)
            return
        digest = source.sha256(key)
        if whole and previous.sha256 == digest:
            yield UnchangedItem(key, size, mtime, whole_file=True)
            return
        keep = frozenset(
            k
            for k, state in stored.items()
            if state.kind == "frame" and state.source_key == sampling.signature and state.sha256 == digest
        )
        yield from _forgotten(path, stored, keep)
        with source.open_video(key, max_pixels) as video:
            frames = 0
            for frame in sampled_frames(video, sampling):
                frames += 1
                item_key = frame_key(path, frame.time)
                if item_key in keep:
                    touched = (size, mtime) != (stored[item_key].file_size, stored[item_key].mtime_ns)
                    yield UnchangedItem(item_key, *((size, mtime) if touched else (None, None)), frame=True)
                    continue
                image = LoadedImage(frame.rgb, digest, size, mtime)
                yield GalleryImage(item_key, path, image, sampling.signature, (frame.index, frame.time))
            if frames == 0:
                reason = video.broke_off or "no frame could be decoded"
                yield SkippedItem(key, f"holds no frames ({reason})", size, mtime, kind="video")
                return
            info = video.info
            record = VideoRecord(path, info.width, info.height, size, mtime, digest, sampling.signature, video.broke_off)
            yield VideoDone(key, record)
    except ImageError as error:
        yield SkippedItem(key, str(error).removeprefix(f"{source.root / path}: "), size, mtime, kind="video")


def _forgotten(path: str, stored: dict[str, ItemState], keep: frozenset[str]) -> Iterator[ForgetFile]:
    """A ``ForgetFile`` when some of the file's stored items are not to be kept."""
    if set(stored) - keep:
        yield ForgetFile(path, keep)
