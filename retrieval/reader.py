"""Reader: gallery files → decoded images, in batches, with unreadable files set aside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .errors import ImageError
from .images import DEFAULT_MAX_PIXELS, LoadedImage, load_image


@dataclass(frozen=True)
class GalleryImage:
    """A decoded gallery image and its path relative to the gallery root."""

    rel_path: str
    image: LoadedImage


@dataclass(frozen=True)
class SkippedFile:
    """A gallery file that was not indexed, and why (one line naming the problem)."""

    rel_path: str
    reason: str


def read_images(
    root: Path, rel_paths: Iterable[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[GalleryImage | SkippedFile]:
    """Decode each file under ``root`` in order; a file that fails becomes a ``SkippedFile``."""
    for rel_path in rel_paths:
        try:
            yield GalleryImage(rel_path, load_image(root / rel_path, max_pixels=max_pixels))
        except ImageError as error:
            reason = str(error).removeprefix(f"{root / rel_path}: ")
            yield SkippedFile(rel_path, reason)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
