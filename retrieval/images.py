"""Decode one image file into an RGB array, the way every other module sees images.

Orientation: EXIF orientation is applied, so pixel coordinates everywhere in
this package (boxes, sizes) are those of the image as a viewer displays it.
Colour: every mode (L, P, RGBA, LA, CMYK, I;16, I, F, ...) becomes 8-bit RGB;
transparent pixels are composited onto white.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

DEFAULT_MAX_PIXELS = 100_000_000
"""Images with more pixels than this are refused before decoding (decompression bombs)."""

# Every decode here checks its own ``max_pixels`` from the header first, so Pillow's
# fixed global guard (which would refuse large panoramas whatever the limit) is off.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class LoadedImage:
    """One decoded image file.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 array, EXIF orientation applied.
        sha256: hex digest of the file's bytes.
        file_size: bytes on disk.
        mtime_ns: modification time, nanoseconds since the epoch.
    """

    rgb: np.ndarray
    sha256: str
    file_size: int
    mtime_ns: int

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def stat_file(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of an image file (symlinks followed); ``ImageError`` when it is missing or not a regular file."""
    try:
        result = os.stat(path)
    except OSError as error:
        raise ImageError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(result.st_mode):
        raise ImageError(f"{path}: not a regular file (a pipe, device or socket)")
    return result


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a file; ``ImageError`` when it cannot be read or is empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    return data


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read, hash and decode ``path``; raise ``ImageError`` naming the file and the reason."""
    info = stat_file(path)
    data = read_file(path)
    return LoadedImage(
        rgb=decode_image_bytes(data, name=str(path), max_pixels=max_pixels),
        sha256=hashlib.sha256(data).hexdigest(),
        file_size=info.st_size,
        mtime_ns=info.st_mtime_ns,
    )


def oriented_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image as displayed (EXIF orientation applied), read from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: cannot be read as an image ({error})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode_image_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes into an ``(H, W, 3)`` uint8 RGB array.

    Args:
        data: the encoded file content.
        name: what to call the image in error messages.
        max_pixels: refuse images whose header declares more pixels than this.
    """
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{name}: {width}x{height} pixels is more than the limit of {max_pixels:,}; "
                "raise the pixel limit (--max-pixels) to index it"
            )
        if width < 1 or height < 1:
            raise ImageError(f"{name}: image has no pixels ({width}x{height})")
        image.seek(0)  # first frame of animations
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read (wrong extension or corrupt)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name}: broken image data ({error})") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode → ``(H, W, 3)`` uint8 RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            top = float(values.max()) or 1.0
            values = values / top * 255.0
        elif values.max() > 255:
            values = values / 257.0  # 16-bit range → 8-bit range
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.array(image.convert("RGB"), dtype=np.uint8)
