"""``retrieval detect``: run the detector on image files, draw what it found, and write COCO-style JSON.

Outputs in ``out``: one picture per image (``<name>.jpg``: boxes, labels and scores drawn with OpenCV)
and ``detections.json``, a COCO dataset (``images``, ``annotations`` with ``bbox`` = ``[x, y, w, h]`` in
original pixels and a ``score``, ``categories``: the detector's own classes with its class ids, torchvision's
COCO ids for the COCO detectors, 1..N for a ``train-detector`` checkpoint). It loads with pycocotools and can
be given back to ``retrieval index --objects annotations --annotations``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from ..atomic import atomic_write_text
from ..errors import ImageError, RetrievalError
from ..images import DEFAULT_MAX_PIXELS, load_image
from ..models import FasterRCNNModel, resolve_device
from ..models.names import COCO_CATEGORIES, DEFAULT_DETECTOR, DETECTOR_NAMES, DEVICES, PRECISIONS
from ..objects import ImageObjects
from ..sources.folder import is_image_name, walk_gallery
from ..validation import check_choice, check_classes, check_detector_input, check_int, check_output_folder
from .visualize import draw_detections, save_picture

IMAGES_PER_BATCH = 8
RESULTS_NAME = "detections.json"
VIDEO_IN_FOLDER = "a video file: detect it on its own: retrieval detect FILE --out DIR"


@dataclass
class DetectSummary:
    """What ``detect_images`` did: images and detections written, ``(file, reason)`` for files skipped."""

    images: int = 0
    detections: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    results: Path | None = None


@dataclass(frozen=True)
class DetectSettings:
    """What ``retrieval detect`` runs: the detector (an architecture name or a ``train-detector`` checkpoint),
    its weights, input size and what it keeps, where it runs, and the largest image it reads.

    Every value is checked here, before anything is loaded (``SettingsError`` naming the option); the classes
    of an architecture name are COCO's (``models.names``), those of a checkpoint are checked when it is read.
    """

    detector: str = DEFAULT_DETECTOR
    weights: str = "default"
    min_size: int = 800
    max_size: int = 1333
    score_threshold: float = 0.5
    max_objects: int = 20
    classes: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        check_detector_input(self.min_size, self.max_size, self.score_threshold, self.max_objects)
        check_int("--max-pixels", self.max_pixels, low=1)
        check_choice("--device", self.device, DEVICES)
        check_choice("--precision", self.precision, PRECISIONS)
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.detector in DETECTOR_NAMES:
            check_classes(self.classes, COCO_CATEGORIES)

    def build(self) -> FasterRCNNModel:
        """The detector these settings describe, loaded on its device."""
        return FasterRCNNModel(
            self.weights,
            resolve_device(self.device),
            self.min_size,
            self.max_size,
            self.score_threshold,
            self.max_objects,
            self.classes,
            self.precision,
            self.detector,
        )


@dataclass(frozen=True)
class InputImage:
    """One image to detect in: its path, and its name (relative path) in the outputs."""

    path: Path
    name: str


def list_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[InputImage], list[tuple[str, str]]]:
    """Image files from files and folders (walked recursively). Names are paths relative to the folder when
    it is the only input (so that ``detections.json`` can annotate that folder as a gallery), else
    ``folder name/relative path``; a file's name is its file name.

    Returns ``(images, problems)``; a missing path, a pipe, a non-image file or a video in a folder is a
    problem, not an error.
    """
    images, problems, names = [], [], set()
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            listing = walk_gallery(path, videos=True)
            problems += [(str(path / rel), reason) for rel, reason in listing.problems]
            problems += [(str(path / video), VIDEO_IN_FOLDER) for video in listing.videos]
            prefix = f"{listing.root.name}/" if len(inputs) > 1 else ""
            candidates = [(listing.root / rel, prefix + rel) for rel in listing.images]
        elif path.exists() and not path.is_file():
            problems.append((str(path), "not a regular file (a pipe, a device or a socket)"))
            continue
        elif path.exists():
            if not is_image_name(path.name):
                problems.append((str(path), "not an image file name (jpg, jpeg, png, bmp, webp, tif, tiff, gif)"))
                continue
            candidates = [(path, path.name)]
        else:
            problems.append((str(path), "no such file or folder"))
            continue
        for file, name in candidates:
            unique, number = name, 2
            while unique in names:
                stem, suffix = os.path.splitext(name)
                unique, number = f"{stem}-{number}{suffix}", number + 1
            names.add(unique)
            images.append(InputImage(file, unique))
    return images, problems


def detect_images(
    inputs: Sequence[str | os.PathLike], out: str | os.PathLike, settings: DetectSettings, progress: bool = True
) -> DetectSummary:
    """Detect objects in every image of ``inputs``; write pictures and ``detections.json`` into ``out``.

    The inputs are listed and ``out`` is created before the detector is built, so that no usable input image
    or an output folder that cannot be made is one error and nothing is loaded.
    """
    images, problems = list_inputs(inputs)
    if not images:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in problems[:3])
        raise RetrievalError(
            f"no image to detect in ({reasons or 'the folders hold no images'}); give image files or folders"
        )
    out = check_output_folder("--out", out)
    detector = settings.build()
    summary = DetectSummary(skipped=list(problems))
    coco_images, annotations = [], []
    bar = tqdm(total=len(images), unit="img", desc="detecting", disable=not progress, file=sys.stderr)
    for start in range(0, len(images), IMAGES_PER_BATCH):
        batch = images[start : start + IMAGES_PER_BATCH]
        loaded = _load_batch(batch, settings.max_pixels, summary.skipped)
        found = detector.detect([rgb for _, rgb in loaded], with_vectors=False) if loaded else []
        for (item, rgb), objects in zip(loaded, found):
            picture = save_picture(draw_detections(rgb, objects), out / (os.path.splitext(item.name)[0] + ".jpg"))
            image_id = len(coco_images) + 1
            coco_images.append(_coco_image(image_id, item, rgb, picture.relative_to(out)))
            annotations += _coco_annotations(image_id, objects, detector.categories, first_id=len(annotations) + 1)
        bar.update(len(batch))
    bar.close()
    document = {
        "info": {"description": "retrieval detect", "detector": detector.identity},
        "images": coco_images,
        "annotations": annotations,
        "categories": _coco_categories(detector.categories),
        "skipped": [{"file": file, "reason": reason} for file, reason in summary.skipped],
    }
    summary.results = out / RESULTS_NAME
    atomic_write_text(summary.results, json.dumps(document, indent=1))
    summary.images, summary.detections = len(coco_images), len(annotations)
    return summary


def _load_batch(batch: Sequence[InputImage], max_pixels: int, skipped: list[tuple[str, str]]) -> list[tuple]:
    """``(item, (H, W, 3) uint8 RGB)`` for each image of ``batch`` that decodes; the others go to ``skipped``."""
    loaded = []
    for item in batch:
        try:
            loaded.append((item, load_image(item.path, max_pixels).rgb))
        except ImageError as error:
            skipped.append((str(item.path), str(error).removeprefix(f"{item.path}: ")))
    return loaded


def _coco_image(image_id: int, item: InputImage, rgb, picture: Path) -> dict:
    height, width = rgb.shape[:2]
    return {
        "id": image_id,
        "file_name": item.name,
        "path": str(item.path.absolute()),
        "width": width,
        "height": height,
        "picture": picture.as_posix(),
    }


def _coco_categories(categories: Sequence[str]) -> list[dict]:
    """The detector's classes as COCO categories: id = the model's class index (0, the background, left out;
    torchvision's COCO list keeps its "N/A" gaps, so that its ids stay COCO's)."""
    return [{"id": i, "name": name} for i, name in enumerate(categories) if i > 0]


def _coco_annotations(image_id: int, objects: ImageObjects, categories: Sequence[str], first_id: int) -> list[dict]:
    """The detections of one image as COCO annotations; ``categories[i]`` is the name of model class ``i``."""
    rows = []
    for number, (box, label, score) in enumerate(zip(objects.boxes, objects.labels, objects.scores)):
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append(
            {
                "id": first_id + number,
                "image_id": image_id,
                "category_id": categories.index(label),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2),
                "score": round(float(score), 5),
                "iscrowd": 0,
            }
        )
    return rows
