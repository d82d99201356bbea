"""A detection dataset folder → train and validation samples with pixel boxes.

YOLO (Ultralytics layout):

- ``data.yaml`` with ``names`` (a list, or a dict of number → name), and ``train`` / ``val``: each a folder
  of images or a ``.txt`` list of image paths, relative to ``path:`` in the yaml or to the dataset folder;
- or, without ``data.yaml``, ``images/train`` and ``images/val`` with the names in ``classes.txt``.

An image's labels are at the same path with the last ``images`` folder replaced by ``labels`` and the
extension by ``.txt``: one line ``class cx cy w h`` per box, normalised to the image as displayed (EXIF
orientation applied). An image without a label file, or with an empty one, is a negative (no objects).

COCO: ``train.json`` and ``val.json`` in the dataset folder (or ``annotations/instances_train.json`` and
``annotations/instances_val.json``), ``file_name`` relative to ``images/`` or to the dataset folder.

Boxes come out as ``(N, 4)`` float32 ``x1, y1, x2, y2`` pixels; labels as ``(N,)`` int64 class numbers
``1..C`` (0 is the detector's background), ``classes[label - 1]`` naming them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..annotations.boxes import parse_yolo_line
from ..errors import AnnotationsError, ImageError
from ..sources.folder import is_image_name
from ..images import oriented_size

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Sample:
    """One image: its file, boxes ``(N, 4)`` float32 pixels, labels ``(N,)`` int64 in ``1..C``."""

    path: Path
    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class DetectionData:
    """A dataset: class names (label ``i`` is ``classes[i - 1]``) and its train and val samples."""

    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample]


def load_detection_data(root: str | os.PathLike) -> DetectionData:
    """Read the dataset in ``root`` (YOLO or COCO, see the module's doc); errors name the file and line."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise AnnotationsError(f"dataset folder {root} does not exist")
    coco = {split: _coco_file(root, split) for split in SPLITS}
    if all(coco.values()):
        classes, splits = _load_coco(root, coco)
    else:
        classes, splits = _load_yolo(root)
    for split in SPLITS:
        if not splits[split]:
            raise AnnotationsError(f"dataset {root} has no {split} images")
    return DetectionData(root, classes, splits["train"], splits["val"])


def _load_yolo(root: Path) -> tuple[list[str], dict[str, list[Sample]]]:
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        try:
            config = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise AnnotationsError(f"{data_yaml} is not valid YAML: {error}") from None
        classes = _names(config.get("names"), data_yaml)
        base = (root / config["path"]) if config.get("path") else root
        sources = {}
        for split in SPLITS:
            if not config.get(split):
                raise AnnotationsError(f"{data_yaml} has no '{split}:' entry (a folder or a .txt list of images)")
            sources[split] = base / str(config[split])
    else:
        names_file = root / "classes.txt"
        if not names_file.is_file():
            raise AnnotationsError(
                f"dataset {root} has neither data.yaml nor classes.txt (nor train.json and val.json for COCO)"
            )
        classes = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        sources = {split: root / "images" / split for split in SPLITS}
    return classes, {split: [_yolo_sample(path, classes) for path in _images_of(sources[split])] for split in SPLITS}


def _names(names, where: Path) -> list[str]:
    if isinstance(names, dict):
        return [str(names[key]) for key in sorted(names)]
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    raise AnnotationsError(f"{where} has no 'names' (a list of class names, or a dict of number → name)")


def _images_of(source: Path) -> list[Path]:
    """The images of a split: every image file under a folder, or the paths listed in a .txt file."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.is_file() and is_image_name(p.name))
    if source.is_file() and source.suffix == ".txt":
        listed = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        paths = [Path(line) if Path(line).is_absolute() else source.parent / line for line in listed]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise AnnotationsError(f"{source} lists {len(missing)} images that do not exist, first {missing[0]}")
        return paths
    raise AnnotationsError(f"{source} is neither a folder of images nor a .txt list of image paths")


def _yolo_sample(image: Path, classes: list[str]) -> Sample:
    parts = list(image.parts)
    if "images" not in parts:
        raise AnnotationsError(f"{image}: YOLO images must lie under an 'images' folder (labels under 'labels')")
    position = len(parts) - 1 - parts[::-1].index("images")
    label_file = Path(*parts[:position], "labels", *parts[position + 1 :]).with_suffix(".txt")
    boxes, labels = [], []
    if label_file.is_file():
        try:
            width, height = oriented_size(image)
        except ImageError as error:
            raise AnnotationsError(str(error)) from None
        for number, line in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            box = parse_yolo_line(line, f"{label_file} line {number}", classes)
            cx, cy, w, h = box.centre_size
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
            labels.append(classes.index(box.label) + 1)
    return _sample(image, boxes, labels)


def _sample(path: Path, boxes: list, labels: list) -> Sample:
    return Sample(
        path=path,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.array(labels, dtype=np.int64),
    )


def _coco_file(root: Path, split: str) -> Path | None:
    for candidate in (root / f"{split}.json", root / "annotations" / f"instances_{split}.json"):
        if candidate.is_file():
            return candidate
    return None


def _load_coco(root: Path, files: dict[str, Path]) -> tuple[list[str], dict[str, list[Sample]]]:
    documents = {}
    for split, path in files.items():
        try:
            documents[split] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise AnnotationsError(f"{path} is not a readable JSON file ({error})") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(documents[split].get(key), list):
                raise AnnotationsError(f"{path} has no '{key}' list: it is not a COCO file")
    categories = sorted({(c["id"], c["name"]) for d in documents.values() for c in d["categories"]})
    classes = [name for _, name in categories]
    number = {category_id: position + 1 for position, (category_id, _) in enumerate(categories)}
    splits = {}
    for split, document in documents.items():
        by_image: dict[int, list] = {image["id"]: [] for image in document["images"]}
        for index, annotation in enumerate(document["annotations"]):
            where = f"{files[split]}: annotations[{index}]"
            x, y, w, h = _bbox(annotation, where)
            if annotation.get("image_id") not in by_image or annotation.get("category_id") not in number:
                raise AnnotationsError(f"{where} names an image_id or category_id that the file does not define")
            by_image[annotation["image_id"]].append(([x, y, x + w, y + h], number[annotation["category_id"]]))
        samples = []
        for image in document["images"]:
            path = next(
                (p for p in (root / "images" / image["file_name"], root / image["file_name"]) if p.is_file()), None
            )
            if path is None:
                raise AnnotationsError(
                    f"{files[split]}: image {image['file_name']!r} is not under {root}/images or {root}"
                )
            found = by_image[image["id"]]
            samples.append(_sample(path, [box for box, _ in found], [label for _, label in found]))
        splits[split] = samples
    return classes, splits


def _bbox(annotation: dict, where: str) -> tuple[float, float, float, float]:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        raise AnnotationsError(f"{where} bbox {bbox!r} must be [x, y, width, height] numbers")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise AnnotationsError(f"{where} bbox {bbox} has a negative position or no area")
    return x, y, w, h
