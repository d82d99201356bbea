"""A small synthetic YOLO detection dataset: coloured shapes (square, disc, bar) on noisy backgrounds.

``write_yolo_dataset(root)`` writes ``root/data.yaml``, ``root/images/{train,val}/*.png`` and
``root/labels/{train,val}/*.txt`` (``class cx cy w h`` normalised), deterministically; the last training
image has no label file (a negative). ``python -m retrieval.testing.shapes OUT`` writes one to look at.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["square", "disc", "bar"]
COLOURS = [(220, 40, 40), (40, 90, 230), (30, 170, 60)]
SIZE = (160, 120)


def write_yolo_dataset(root: Path, train: int = 8, val: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            image, lines = _scene(rng)
            name = f"{split}_{number:03d}"
            image.save(root / "images" / split / f"{name}.png")
            if not (split == "train" and number == count - 1):
                (root / "labels" / split / f"{name}.txt").write_text("".join(lines))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [square, disc, bar]\n")
    return root


def _scene(rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    width, height = SIZE
    noise = rng.integers(90, 170, (height, width, 1)) + rng.integers(-12, 12, (height, width, 3))
    image = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    lines = []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 3))
        w = int(rng.integers(22, 44))
        h = w if kind < 2 else max(8, w // 3)
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        shape = draw.ellipse if kind == 1 else draw.rectangle
        shape([x, y, x + w - 1, y + h - 1], fill=COLOURS[kind])
        lines.append(f"{kind} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}\n")
    return image, lines


if __name__ == "__main__":
    print(write_yolo_dataset(Path(sys.argv[1])))
