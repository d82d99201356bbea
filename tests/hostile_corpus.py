#!/usr/bin/env python3
"""Generate a gallery folder of hostile and odd files, and what indexing should make of each.

Usage: python tests/hostile_corpus.py OUT_FOLDER   (prints each file and its expected outcome)

Readable (must be indexed): plain JPEG/PNG, upper-case extension, unicode and space names, WebP,
CMYK JPEG, 16-bit PNG, palette PNG with transparency, every EXIF orientation (1-8), 1x1 and
2000x3 pixel images, animated GIF and PNG, multi-page TIFF.
Unreadable (must be skipped with a reason): zero bytes, text named .jpg, truncated and garbage
JPEG/PNG, a 30000x30000 decompression bomb, a symlink to itself, a dangling symlink, a named
pipe, a file without read permission, and a symlinked folder that loops back.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Expected:
    """``outcome`` is ``indexed`` or ``skipped``; ``size`` the (width, height) after EXIF; ``reason`` a substring."""

    outcome: str
    size: tuple[int, int] | None = None
    reason: str | None = None
    is_file: bool = True


def _blocks(width: int, height: int, seed: int) -> Image.Image:
    """A ``width`` x ``height`` RGB image of random 8-pixel blocks."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)[:height, :width])


def _encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels (2.7 GB decoded) in a few hundred bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def make_corpus(folder: Path) -> dict[str, Expected]:
    """Fill ``folder``; return what indexing should make of each entry (paths relative to ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, Expected] = {}

    def write(name: str, data: bytes, outcome: Expected) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[name] = outcome

    readable = Expected("indexed", (160, 120))
    write("good.jpg", _encode(_blocks(160, 120, 0), "JPEG"), readable)
    write("UPPER CASE.PNG", _encode(_blocks(160, 120, 1), "PNG"), readable)
    write("nested/deeper/café ☕ photo.jpg", _encode(_blocks(160, 120, 2), "JPEG"), readable)
    write("nested/日本語の名前.webp", _encode(_blocks(160, 120, 3), "WEBP"), readable)
    write("cmyk.jpg", _encode(_blocks(160, 120, 4).convert("CMYK"), "JPEG"), readable)
    deep = (np.arange(120 * 160, dtype=np.uint32).reshape(120, 160) * 3).astype(np.uint16)
    write("deep16.png", _encode(Image.fromarray(deep), "PNG"), readable)
    palette = _blocks(160, 120, 5).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    write("palette_alpha.png", _encode(palette, "PNG", transparency=0), readable)
    for orientation in range(1, 9):
        image = _blocks(48, 32, 10 + orientation)
        exif = image.getexif()
        exif[0x0112] = orientation
        size = (32, 48) if orientation >= 5 else (48, 32)
        write(f"exif/orientation_{orientation}.jpg", _encode(image, "JPEG", exif=exif), Expected("indexed", size))
    write("tiny.png", _encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), Expected("indexed", (1, 1)))
    write("wide.png", _encode(_blocks(2000, 3, 6), "PNG"), Expected("indexed", (2000, 3)))
    frames = [_blocks(64, 48, 20 + i) for i in range(3)]
    write(
        "animated.gif",
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        Expected("indexed", (64, 48)),
    )
    write(
        "animated.png",
        _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        Expected("indexed", (64, 48)),
    )
    write(
        "pages.tif", _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]), Expected("indexed", (64, 48))
    )

    write("empty.jpg", b"", Expected("skipped", reason="empty file (0 bytes)"))
    write("text.jpg", b"not a picture, only words\n", Expected("skipped", reason="not an image file Pillow can read"))
    jpeg = _encode(_blocks(160, 120, 7), "JPEG")
    write("truncated.jpg", jpeg[: len(jpeg) // 2], Expected("skipped", reason="broken image data"))
    rng = np.random.default_rng(8)
    write("garbage.jpg", b"\xff\xd8\xff\xe0" + rng.bytes(3000), Expected("skipped", reason=""))
    png = _encode(_blocks(160, 120, 9), "PNG")
    write("truncated.png", png[: len(png) // 2], Expected("skipped", reason="broken image data"))
    write("garbage.png", png[:16] + rng.bytes(3000), Expected("skipped", reason=""))
    write("bomb.png", decompression_bomb(), Expected("skipped", reason="30000x30000 pixels is more than the limit"))
    write("unreadable.jpg", _encode(_blocks(160, 120, 10), "JPEG"), Expected("skipped", reason="Permission denied"))
    os.chmod(folder / "unreadable.jpg", 0)
    os.symlink("loop.jpg", folder / "loop.jpg")
    expected["loop.jpg"] = Expected("skipped", reason="Too many levels of symbolic links")
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    expected["dangling.jpg"] = Expected("skipped", reason="No such file or directory")
    os.mkfifo(folder / "pipe.jpg")
    expected["pipe.jpg"] = Expected("skipped", reason="not a regular file")
    os.symlink("..", folder / "nested" / "back-to-top")
    expected["nested/back-to-top"] = Expected("skipped", reason="already walked", is_file=False)
    (folder / "notes.txt").write_text("not an image name: ignored, not reported")
    return expected


def write_yolo_labels(expected: dict[str, Expected], labels: Path) -> Path:
    """One centred box (half the width and height) per file of the corpus, as a YOLO labels folder."""
    for name, outcome in expected.items():
        if outcome.is_file:
            label = labels / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("0 0.5 0.5 0.5 0.5\n")
    (labels / "classes.txt").write_text("thing\n")
    return labels


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, outcome in sorted(make_corpus(Path(sys.argv[1])).items()):
        print(f"{outcome.outcome:8} {name}")
