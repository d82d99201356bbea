"""The demo gallery, queries and ground truth, generated deterministically (``scripts/make_demo_data.py``).

Sixteen made-up object instances (patterned boxes, cans and labels, each with
its own colours, pattern and code) are placed at other positions and scales in
40 cluttered gallery scenes, three per scene, so each instance appears in 7 or
8 gallery images. Each query image shows one instance (at a new scale, on a new
background, beside a distractor instance) with its box in the ground truth.

``generate(out)`` writes::

    gallery/scene_000.jpg ... scene_039.jpg    640x480 scenes
    gallery/annotations.json                   COCO boxes of every placed instance
    query/<instance>.jpg                       one query image per instance
    query/ground_truth.json                    {"queries": [{"image", "box", "positives"}]} for `retrieval evaluate`
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SEED = 2026
INSTANCES = 16
SCENES = 40
PER_SCENE = 3
SCENE_SIZE = (640, 480)  # width, height
QUERY_SIZE = (480, 360)
PATTERNS = ("stripes", "checker", "dots", "rings", "diagonal", "grid")
SHAPES = ("box", "can", "label")


def make_instance(rng: np.random.Generator, index: int) -> tuple[str, np.ndarray, np.ndarray]:
    """One object instance: ``(name, rgb (h, w, 3) uint8, mask (h, w) bool)`` at its base size."""
    shape = SHAPES[index % len(SHAPES)]
    pattern = PATTERNS[index % len(PATTERNS)]
    width, height = {"box": (110, 140), "can": (80, 150), "label": (150, 100)}[shape]
    width += int(rng.integers(-10, 11))
    height += int(rng.integers(-10, 11))
    base, accent, ink = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(3))
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:] = base
    step = int(rng.integers(8, 20))
    if pattern == "stripes":
        for y in range(0, height, 2 * step):
            rgb[y : y + step] = accent
    elif pattern == "checker":
        for y in range(0, height, step):
            for x in range(0, width, step):
                if (x // step + y // step) % 2:
                    rgb[y : y + step, x : x + step] = accent
    elif pattern == "dots":
        for y in range(step, height, 2 * step):
            for x in range(step, width, 2 * step):
                cv2.circle(rgb, (x, y), max(3, step // 2), accent, -1)
    elif pattern == "rings":
        for radius in range(max(width, height), 0, -step):
            cv2.circle(rgb, (width // 2, height // 2), radius, accent if (radius // step) % 2 else base, -1)
    elif pattern == "diagonal":
        for offset in range(-height, width, 2 * step):
            cv2.line(rgb, (offset, 0), (offset + height, height), accent, step)
    else:
        for x in range(0, width, step):
            cv2.line(rgb, (x, 0), (x, height), accent, 2)
        for y in range(0, height, step):
            cv2.line(rgb, (0, y), (width, y), accent, 2)
    cv2.rectangle(rgb, (width // 6, height // 3), (5 * width // 6, 2 * height // 3), ink, -1)
    code = f"{chr(65 + index)}{index * 7 % 10}"
    cv2.putText(rgb, code, (width // 6 + 4, 2 * height // 3 - 8), cv2.FONT_HERSHEY_DUPLEX, 1.0, base, 2, cv2.LINE_AA)
    mask = np.zeros((height, width), dtype=np.uint8)
    if shape == "can":
        cv2.ellipse(mask, (width // 2, height // 2), (width // 2, height // 2), 0, 0, 360, 1, -1)
        mask[height // 6 : 5 * height // 6] = 1
    elif shape == "label":
        cv2.rectangle(mask, (0, 0), (width - 1, height - 1), 1, -1)
        for cx, cy in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
            cv2.circle(mask, (cx, cy), 12, 0, -1)
    else:
        mask[:] = 1
    cv2.rectangle(rgb, (0, 0), (width - 1, height - 1), ink, 3)
    name = f"{pattern}-{shape}-{code}".lower()
    return name, rgb, mask.astype(bool)


def make_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A cluttered ``(h, w, 3)`` uint8 background: a colour gradient, noise and grey shapes."""
    width, height = size
    top, bottom = rng.integers(40, 220, 3), rng.integers(40, 220, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1)
    image = image + rng.normal(0, 5, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(12):
        grey = int(rng.integers(60, 200))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), int(rng.integers(10, 50)), (grey, grey, grey), -1)
        else:
            cv2.rectangle(
                image, (x, y), (x + int(rng.integers(20, 90)), y + int(rng.integers(10, 60))), (grey, grey, grey), -1
            )
    return image


def place(
    rng: np.random.Generator, canvas: np.ndarray, sprite: np.ndarray, mask: np.ndarray, taken: list, scale: float
) -> list[int] | None:
    """Paste ``sprite`` (scaled) where it overlaps no box in ``taken``; return its ``[x1, y1, x2, y2]`` or None."""
    height, width = canvas.shape[:2]
    w, h = max(8, round(sprite.shape[1] * scale)), max(8, round(sprite.shape[0] * scale))
    if w >= width or h >= height:
        return None
    resized = cv2.resize(sprite, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    resized_mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    brightness = rng.uniform(0.85, 1.15)
    resized = np.clip(resized.astype(np.float64) * brightness, 0, 255).astype(np.uint8)
    for _ in range(200):
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = [x, y, x + w, y + h]
        if all(box[2] + 6 <= t[0] or t[2] + 6 <= box[0] or box[3] + 6 <= t[1] or t[3] + 6 <= box[1] for t in taken):
            region = canvas[y : y + h, x : x + w]
            region[resized_mask] = resized[resized_mask]
            taken.append(box)
            return box
    return None


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def scene_schedule(rng: np.random.Generator) -> list[list[int]]:
    """Which instances appear in each scene: PER_SCENE distinct ones, every instance about equally often."""
    pool: list[int] = []
    while len(pool) < SCENES * PER_SCENE:
        pool.extend(rng.permutation(INSTANCES).tolist())
    schedule = []
    for s in range(SCENES):
        chosen: list[int] = []
        for candidate in list(pool):
            if candidate not in chosen:
                chosen.append(candidate)
                pool.remove(candidate)
            if len(chosen) == PER_SCENE:
                break
        schedule.append(chosen)
    return schedule


def generate(out: Path) -> dict:
    """Write gallery/, query/ and the ground truth under ``out``; return a summary."""
    rng = np.random.default_rng(SEED)
    instances = [make_instance(rng, i) for i in range(INSTANCES)]
    gallery, query = out / "gallery", out / "query"
    gallery.mkdir(parents=True, exist_ok=True)
    query.mkdir(parents=True, exist_ok=True)
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, (n, _, _) in enumerate(instances)],
    }
    appears_in: dict[int, list[str]] = {i: [] for i in range(INSTANCES)}
    for scene, members in enumerate(scene_schedule(rng)):
        canvas = make_background(rng, SCENE_SIZE)
        taken: list = []
        file_name = f"scene_{scene:03d}.jpg"
        coco["images"].append(
            {"id": scene + 1, "file_name": file_name, "width": SCENE_SIZE[0], "height": SCENE_SIZE[1]}
        )
        for member in members:
            _, sprite, mask = instances[member]
            box = None
            while box is None:
                box = place(rng, canvas, sprite, mask, taken, float(rng.uniform(0.55, 1.35)))
            appears_in[member].append(file_name)
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": scene + 1,
                    "category_id": member + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": (box[2] - box[0]) * (box[3] - box[1]),
                    "iscrowd": 0,
                }
            )
        (gallery / file_name).write_bytes(jpeg_bytes(canvas))
    (gallery / "annotations.json").write_text(json.dumps(coco, indent=1) + "\n")
    queries = []
    for member, (name, sprite, mask) in enumerate(instances):
        canvas = make_background(rng, QUERY_SIZE)
        taken: list = []
        box = None
        while box is None:
            box = place(rng, canvas, sprite, mask, taken, float(rng.uniform(0.7, 1.2)))
        distractor = instances[(member + 1 + int(rng.integers(0, INSTANCES - 1))) % INSTANCES]
        place(rng, canvas, distractor[1], distractor[2], taken, 0.8)
        (query / f"{name}.jpg").write_bytes(jpeg_bytes(canvas))
        queries.append(
            {"image": f"{name}.jpg", "box": box, "positives": [f"../gallery/{f}" for f in appears_in[member]]}
        )
    (query / "ground_truth.json").write_text(json.dumps({"queries": queries}, indent=1) + "\n")
    return {"instances": INSTANCES, "scenes": SCENES, "queries": len(queries)}
