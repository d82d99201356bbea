"""Gallery images as the browser gets them: re-encoded JPEG, EXIF orientation applied (the frame every box
is in), full size or as thumbnails. Only files of the index's gallery are ever read."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..images import load_image, stat_file
from ..images import oriented_size as image_size

THUMBNAIL_SIDE = 320
JPEG_QUALITY = 90


class OutsideGallery(Exception):
    """A path that resolves (through ``..`` or symlinks) to somewhere outside the gallery folder."""


def gallery_file(root: Path, rel_path: str) -> Path:
    """``root / rel_path`` with every symlink resolved; ``OutsideGallery`` when that is not inside ``root``."""
    real_root = Path(root).resolve()
    path = (real_root / rel_path).resolve()
    if not path.is_relative_to(real_root):
        raise OutsideGallery(rel_path)
    return path


def picture(path: Path, thumbnail: bool) -> tuple[bytes, int, int]:
    """``(JPEG bytes, width, height)`` of the image at ``path`` (a thumbnail: longest side 320)."""
    info = stat_file(path)
    return _encoded(str(path), info.st_mtime_ns, info.st_size, thumbnail)


def oriented_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image as displayed (EXIF orientation applied), from the header alone."""
    info = stat_file(path)
    return _size(str(path), info.st_mtime_ns, info.st_size)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 RGB → JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


@lru_cache(maxsize=1024)
def _encoded(path: str, mtime_ns: int, size: int, thumbnail: bool) -> tuple[bytes, int, int]:
    """Cached by path, modification time and size, so a changed file is read again."""
    rgb = load_image(path).rgb
    height, width = rgb.shape[:2]
    if thumbnail:
        image = Image.fromarray(rgb)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
        rgb = np.asarray(image)
    return encode_jpeg(rgb), width, height


@lru_cache(maxsize=65536)
def _size(path: str, mtime_ns: int, size: int) -> tuple[int, int]:
    return image_size(path)
