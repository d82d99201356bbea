"""Find the image files of a gallery folder.

The walk is recursive, follows symlinked folders once each (a symlink loop is
reported, not followed forever) and yields paths relative to the gallery root,
in a stable sorted order so that two runs over the same folder agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RetrievalError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class GalleryListing:
    """The result of walking a gallery.

    Attributes:
        root: the gallery folder, absolute.
        images: image paths relative to ``root`` (POSIX separators), sorted.
        problems: ``(relative path, reason)`` for folders that could not be
            walked (unreadable, or a symlink leading back into the walk).
    """

    root: Path
    images: list[str]
    problems: list[tuple[str, str]]


def is_image_name(name: str) -> bool:
    """True when ``name`` ends in one of ``IMAGE_EXTENSIONS``, in any case."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_gallery(root: str | os.PathLike, exclude: tuple[Path, ...] = ()) -> GalleryListing:
    """List the image files under ``root``.

    Args:
        root: the gallery folder.
        exclude: folders not to enter (for example an index kept inside the gallery).
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise RetrievalError(f"gallery folder {root} does not exist or is not a folder")
    excluded = {_identity(p) for p in exclude if p.exists()}
    images: list[str] = []
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

    visit(root, "")
    return GalleryListing(root=root, images=images, problems=problems)


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _is_folder(entry: os.DirEntry) -> bool:
    """True for a folder or a symlink to one; False for a broken or looping link."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False
