"""The gallery-source door: what an indexed item is and how it is read.

A gallery source turns what the user points ``retrieval index`` at (a folder of photos and videos) into
*items*, each with:

- a ``key``: the source's name for it, unique within the gallery (a folder's: the file's path relative
  to the gallery root, ``/`` separators); the store, results and the server carry it;
- the ``path`` of the file it comes from (relative to the root), for pictures and ``retrieval remove``;
- a cheap ``fingerprint`` (bytes and mtime of that file) and a content digest (sha256), to notice changes;
- its pixels: ``read`` → ``LoadedImage`` (``(H, W, 3)`` uint8 RGB, EXIF orientation applied).

A source may also hold videos (``VideoSource``): a listed key it calls a video is opened with
``open_video`` and its frames become items (``video.py``: sampling, near-duplicates, frame keys), so a
frame is one more kind of item for everything downstream.

Built-in sources are the modules of this package (``folder``); ``register_source`` adds others at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from ..registry import Registry

if TYPE_CHECKING:
    from ..images import LoadedImage
    from ..videos import VideoFile


@dataclass(frozen=True)
class SourceListing:
    """What a source holds now.

    Attributes:
        root: the gallery, absolute.
        keys: the items' keys, in a stable order.
        problems: ``(key or path, reason)`` for what could not be listed (an unreadable folder, a loop).
    """

    root: Path
    keys: list[str]
    problems: list[tuple[str, str]] = field(default_factory=list)


class GallerySource(Protocol):
    """Items of one gallery. Methods taking a ``key`` raise ``ImageError`` for an item that cannot be read."""

    root: Path

    def listing(self) -> SourceListing: ...

    def path_of(self, key: str) -> str:
        """The file ``key`` comes from, relative to ``root``."""
        ...

    def fingerprint(self, key: str) -> tuple[int, int]:
        """``(bytes, mtime_ns)`` of that file: unchanged values mean an unchanged item, without reading it."""
        ...

    def read(self, key: str, max_pixels: int, unchanged_sha256: str | None = None) -> LoadedImage | None:
        """The item's pixels, or ``None`` when its content digest equals ``unchanged_sha256`` (not decoded)."""
        ...


class VideoSource(GallerySource, Protocol):
    """A source whose listing may name videos: each is expanded into its sampled frames by the reader."""

    def is_video(self, key: str) -> bool: ...

    def open_video(self, key: str, max_pixels: int) -> VideoFile:
        """The video ``key`` opened for decoding (``VideoError`` naming it when it cannot be)."""
        ...

    def sha256(self, key: str) -> str:
        """The digest of the video file's bytes (read in chunks, never whole into memory)."""
        ...


def holds_videos(source: GallerySource) -> bool:
    """True when ``source`` can name videos (``VideoSource``)."""
    return callable(getattr(source, "is_video", None))


@dataclass(frozen=True)
class SourceEntry:
    """How to open one kind of gallery.

    Attributes:
        open: ``(root, exclude) -> GallerySource``; ``exclude`` are folders never to read (an index inside
            the gallery). A root this source cannot read is a ``RetrievalError`` naming it.
        summary: one line for ``--help``.
    """

    open: Callable[[Path, tuple[Path, ...]], GallerySource]
    summary: str = ""


SOURCES: Registry[SourceEntry] = Registry("gallery source", "retrieval.sources")


def register_source(name: str, entry: SourceEntry) -> SourceEntry:
    """Make ``entry`` available as ``IndexSettings(source=name)``."""
    return SOURCES.register(name, entry)


def open_source(name: str, root: str | Path, exclude: tuple[Path, ...] = ()) -> GallerySource:
    """The gallery at ``root`` read by the source named ``name``."""
    return SOURCES.get(name).open(Path(root).absolute(), tuple(exclude))
