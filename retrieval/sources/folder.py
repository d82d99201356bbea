"""folder: a folder of photos and videos, walked recursively; each image file is one item keyed by its
relative path, each video file (mp4, mov, avi, mkv, webm) is read as its sampled frames.

The walk is recursive, follows symlinked folders once each (a symlink loop is
reported, not followed forever) and yields paths relative to the gallery root,
in a stable sorted order so that two runs over the same folder agree.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError, RetrievalError
from ..images import LoadedImage, decode_image_bytes, read_file, stat_file
from ..videos import VideoFile, is_video_name
from . import SourceEntry, SourceListing

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class GalleryListing:
    """The result of walking a gallery.

    Attributes:
        root: the gallery folder, absolute.
        images: image paths relative to ``root`` (POSIX separators), sorted.
        videos: video paths, the same way (empty unless asked for).
        problems: ``(relative path, reason)`` for folders that could not be
            walked (unreadable, or a symlink leading back into the walk).
    """

    root: Path
    images: list[str]
    problems: list[tuple[str, str]]
    videos: list[str] = field(default_factory=list)


def is_image_name(name: str) -> bool:
    """True when ``name`` ends in one of ``IMAGE_EXTENSIONS``, in any case."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_gallery(root: str | os.PathLike, exclude: tuple[Path, ...] = (), videos: bool = False) -> GalleryListing:
    """List the image files under ``root``.

    Args:
        root: the gallery folder.
        exclude: folders not to enter (for example an index kept inside the gallery).
        videos: list video files too (``GalleryListing.videos``).
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise RetrievalError(f"gallery folder {root} does not exist or is not a folder")
    excluded = {_identity(p) for p in exclude if p.exists()}
    images: list[str] = []
    found_videos: list[str] = []
    problems: list[tuple[str, str]] = []
    visited: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: str) -> None:
        key = _identity(folder)
        if key in visited:
            problems.append((rel, "symlink to a folder already walked (a loop or a second path); not walked again"))
            return
        if key in excluded:
            return
        visited.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            problems.append((rel or ".", f"folder cannot be read: {error.strerror or error}"))
            return
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if _is_folder(entry):
                visit(Path(entry.path), child_rel)
            elif is_image_name(entry.name):
                images.append(child_rel)
            elif videos and is_video_name(entry.name):
                found_videos.append(child_rel)

    visit(root, "")
    return GalleryListing(root=root, images=images, problems=problems, videos=found_videos)


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _is_folder(entry: os.DirEntry) -> bool:
    """True for a folder or a symlink to one; False for a broken or looping link."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


class FolderSource:
    """The image and video files under ``root`` (``IMAGE_EXTENSIONS``, ``videos.VIDEO_EXTENSIONS``); a listed
    key is the file's relative path (a video's frames are keyed by the reader, ``video.frame_key``)."""

    def __init__(self, root: Path, exclude: tuple[Path, ...] = ()) -> None:
        self.root = Path(root).absolute()
        self.exclude = exclude
        self._stats: dict[str, os.stat_result] = {}  # from fingerprint() until read(): one stat per file
        if not self.root.is_dir():
            raise RetrievalError(f"gallery folder {self.root} does not exist or is not a folder")

    def listing(self) -> SourceListing:
        walked = walk_gallery(self.root, self.exclude, videos=True)
        keys = sorted(walked.images + walked.videos, key=lambda key: key.split("/"))  # the walk's order
        return SourceListing(walked.root, keys, walked.problems)

    def path_of(self, key: str) -> str:
        return key

    def is_video(self, key: str) -> bool:
        return is_video_name(key)

    def open_video(self, key: str, max_pixels: int) -> VideoFile:
        self._stats.pop(key, None)
        return VideoFile(self.root / key, max_pixels)

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        try:
            with open(self.root / key, "rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as error:
            raise ImageError(f"{self.root / key}: cannot be read ({error.strerror or error})") from None
        return digest.hexdigest()

    def fingerprint(self, key: str) -> tuple[int, int]:
        info = self._stats[key] = stat_file(self.root / key)
        return info.st_size, info.st_mtime_ns

    def read(self, key: str, max_pixels: int, unchanged_sha256: str | None = None) -> LoadedImage | None:
        path = self.root / key
        info = self._stats.pop(key, None) or stat_file(path)
        data = read_file(path)
        digest = hashlib.sha256(data).hexdigest()
        if digest == unchanged_sha256:
            return None
        rgb = decode_image_bytes(data, name=str(path), max_pixels=max_pixels)
        return LoadedImage(rgb, digest, info.st_size, info.st_mtime_ns)


ENTRY = SourceEntry(open=FolderSource, summary="a folder of photos (jpg, png, ...), walked recursively")
