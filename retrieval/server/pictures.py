"""Gallery pictures as the browser gets them: re-encoded JPEG, EXIF orientation applied (the frame every box
is in), full size or as thumbnails; a video frame item's picture is its frame, decoded from the video at the
frame's time. Only files of the index's gallery are ever read."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..images import stat_file
from ..index.pictures import picture_rgb

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


def picture(path: Path, thumbnail: bool, time: float | None = None) -> tuple[bytes, int, int]:
    """``(JPEG bytes, width, height)`` of the image at ``path``, or of the frame at ``time`` seconds of the video
    at ``path`` (a thumbnail: longest side 320)."""
    info = stat_file(path)
    return _encoded(str(path), info.st_mtime_ns, info.st_size, thumbnail, time)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 RGB → JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


@lru_cache(maxsize=1024)
def _encoded(path: str, mtime_ns: int, size: int, thumbnail: bool, time: float | None) -> tuple[bytes, int, int]:
    """Cached by path, modification time, size (so a changed file is read again) and frame time."""
    rgb = picture_rgb(path, time)
    height, width = rgb.shape[:2]
    if thumbnail:
        image = Image.fromarray(rgb)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
        rgb = np.asarray(image)
    return encode_jpeg(rgb), width, height
