"""Writes a gallery folder full of odd and broken files, and says what should become of each."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

READABLE = "indexed"
UNREADABLE = "skipped"


def _scene(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return Image.fromarray(rgb)


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def make_odd_gallery(folder: Path) -> dict[str, str]:
    """Fill ``folder``; return ``{relative path: "indexed" | "skipped"}`` for image-named entries and folder loops."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def write(name: str, data: bytes, outcome: str) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[name] = outcome

    write("good.jpg", _jpeg(_scene()), READABLE)
    write("UPPER CASE.PNG", _png(_scene(seed=1)), READABLE)
    write("nested/deeper/café ☕ photo.jpg", _jpeg(_scene(seed=2)), READABLE)
    write("cmyk.jpg", _jpeg(_scene(seed=3).convert("CMYK")), READABLE)
    deep = (np.arange(120 * 160, dtype=np.uint32).reshape(120, 160) * 3).astype(np.uint16)
    write("deep16.png", _png(Image.fromarray(deep)), READABLE)
    palette = _scene(seed=4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    write("palette_alpha.png", _png(palette, transparency=0), READABLE)
    rotated = _scene(200, 96, seed=5)
    exif = rotated.getexif()
    exif[0x0112] = 6
    write("rotated.jpg", _jpeg(rotated, exif=exif), READABLE)
    write("tiny.png", _png(Image.new("RGB", (1, 1), (200, 10, 10))), READABLE)
    write("empty.jpg", b"", UNREADABLE)
    write("text.jpg", b"not a picture, only words\n", UNREADABLE)
    whole = _jpeg(_scene(seed=6))
    write("truncated.jpg", whole[: len(whole) // 2], UNREADABLE)
    write("notes.txt", b"ignored: not an image name", "ignored")
    del expected["notes.txt"]
    os.symlink("loop.jpg", folder / "loop.jpg")
    expected["loop.jpg"] = UNREADABLE
    os.symlink("..", folder / "nested" / "back-to-top")
    expected["nested/back-to-top"] = UNREADABLE
    return expected


def write_yolo_labels(expected: dict[str, str], labels: Path) -> Path:
    """One centred box (half the width and height) per image-named file of ``expected``, as YOLO labels."""
    for name in expected:
        label = labels / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 0.5 0.5 0.5 0.5\n")
    (labels / "classes.txt").write_text("thing\n")
    return labels
