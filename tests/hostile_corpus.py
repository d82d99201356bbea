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
    corpus = _Corpus(folder)
    corpus.readable()
    corpus.broken()
    corpus.special_files()
    return corpus.expected


class _Corpus:
    """Writes the corpus's entries into ``folder``, noting each one's ``Expected`` outcome."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.expected: dict[str, Expected] = {}

    def write(self, name: str, data: bytes, outcome: Expected) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.expected[name] = outcome

    def readable(self) -> None:
        """Images in every mode, format, orientation and odd shape that indexing must read."""
        readable = Expected("indexed", (160, 120))
        self.write("good.jpg", _encode(_blocks(160, 120, 0), "JPEG"), readable)
        self.write("UPPER CASE.PNG", _encode(_blocks(160, 120, 1), "PNG"), readable)
        self.write("nested/deeper/café ☕ photo.jpg", _encode(_blocks(160, 120, 2), "JPEG"), readable)
        self.write("nested/日本語の名前.webp", _encode(_blocks(160, 120, 3), "WEBP"), readable)
        self.write("cmyk.jpg", _encode(_blocks(160, 120, 4).convert("CMYK"), "JPEG"), readable)
        deep = (np.arange(120 * 160, dtype=np.uint32).reshape(120, 160) * 3).astype(np.uint16)
        self.write("deep16.png", _encode(Image.fromarray(deep), "PNG"), readable)
        palette = _blocks(160, 120, 5).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        self.write("palette_alpha.png", _encode(palette, "PNG", transparency=0), readable)
        for orientation in range(1, 9):
            image = _blocks(48, 32, 10 + orientation)
            exif = image.getexif()
            exif[0x0112] = orientation
            size = (32, 48) if orientation >= 5 else (48, 32)
            name = f"exif/orientation_{orientation}.jpg"
            self.write(name, _encode(image, "JPEG", exif=exif), Expected("indexed", size))
        tiny = Image.new("RGB", (1, 1), (200, 10, 10))
        self.write("tiny.png", _encode(tiny, "PNG"), Expected("indexed", (1, 1)))
        self.write("wide.png", _encode(_blocks(2000, 3, 6), "PNG"), Expected("indexed", (2000, 3)))
        frames = [_blocks(64, 48, 20 + i) for i in range(3)]
        self.write(
            "animated.gif",
            _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
            Expected("indexed", (64, 48)),
        )
        self.write(
            "animated.png",
            _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
            Expected("indexed", (64, 48)),
        )
        pages = _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
        self.write("pages.tif", pages, Expected("indexed", (64, 48)))

    def broken(self) -> None:
        """Files with image names whose bytes are empty, text, truncated, garbage or a decompression bomb."""
        self.write("empty.jpg", b"", Expected("skipped", reason="empty file (0 bytes)"))
        not_an_image = Expected("skipped", reason="not an image file Pillow can read")
        self.write("text.jpg", b"not a picture, only words\n", not_an_image)
        jpeg = _encode(_blocks(160, 120, 7), "JPEG")
        self.write("truncated.jpg", jpeg[: len(jpeg) // 2], Expected("skipped", reason="broken image data"))
        rng = np.random.default_rng(8)
        self.write("garbage.jpg", b"\xff\xd8\xff\xe0" + rng.bytes(3000), Expected("skipped", reason=""))
        png = _encode(_blocks(160, 120, 9), "PNG")
        self.write("truncated.png", png[: len(png) // 2], Expected("skipped", reason="broken image data"))
        self.write("garbage.png", png[:16] + rng.bytes(3000), Expected("skipped", reason=""))
        too_large = Expected("skipped", reason="30000x30000 pixels is more than the limit")
        self.write("bomb.png", decompression_bomb(), too_large)

    def special_files(self) -> None:
        """Entries that are not plain readable files: no permission, link loops, dangling links, a pipe."""
        no_permission = Expected("skipped", reason="Permission denied")
        self.write("unreadable.jpg", _encode(_blocks(160, 120, 10), "JPEG"), no_permission)
        os.chmod(self.folder / "unreadable.jpg", 0)
        os.symlink("loop.jpg", self.folder / "loop.jpg")
        self.expected["loop.jpg"] = Expected("skipped", reason="Too many levels of symbolic links")
        os.symlink("nowhere.jpg", self.folder / "dangling.jpg")
        self.expected["dangling.jpg"] = Expected("skipped", reason="No such file or directory")
        os.mkfifo(self.folder / "pipe.jpg")
        self.expected["pipe.jpg"] = Expected("skipped", reason="not a regular file")
        os.symlink("..", self.folder / "nested" / "back-to-top")
        self.expected["nested/back-to-top"] = Expected("skipped", reason="already walked", is_file=False)
        (self.folder / "notes.txt").write_text("not an image name: ignored, not reported")


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
