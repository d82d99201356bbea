"""A detection dataset folder → train and validation samples with pixel boxes.

This module lays the dataset out (which files make each split); the files are read by the shared parsers
in ``retrieval.annotations``, with the same rules as ``index --objects annotations``.

YOLO (Ultralytics layout):

- ``data.yaml`` with ``names`` (a list, or a dict of number → name), and ``train`` / ``val``: each a folder
  of images or a ``.txt`` list of image paths, relative to ``path:`` in the yaml or to the dataset folder;
- or, without ``data.yaml``, ``images/train`` and ``images/val`` with the names in ``classes.txt``.

An image's image root is the last ``images`` folder in its path, and its labels folder the ``labels``
folder beside it: ``images/train/a.jpg`` has the labels ``labels/train/a.txt`` (one line ``class cx cy w h``
per box, normalised to the image as displayed, EXIF orientation applied). An image without a label file,
or with an empty one, is a negative (no objects).

COCO: ``train.json`` and ``val.json`` in the dataset folder (or ``annotations/instances_train.json`` and
``annotations/instances_val.json``); the image root is ``images/`` in the dataset folder (the dataset folder
itself where there is none), and ``file_name`` is relative to it. A split is the images its file names.

Boxes come out as ``(N, 4)`` float32 ``x1, y1, x2, y2`` pixels; labels as ``(N,)`` int64 class numbers
``1..C`` (0 is the detector's background), ``classes[label - 1]`` naming them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..annotations import AnnotationSet, coco_annotations, labels_folder_of, load_annotations, read_coco
from ..annotations.gallery import Box
from ..annotations.yolo import NAMES_FILE, names_of, read_data_yaml, read_names_file
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
        config = read_data_yaml(data_yaml)
        classes = names_of(config, data_yaml)
        base = (root / config["path"]) if config.get("path") else root
        sources = {}
        for split in SPLITS:
            if not config.get(split):
                raise AnnotationsError(f"{data_yaml} has no '{split}:' entry (a folder or a .txt list of images)")
            sources[split] = base / str(config[split])
    else:
        if not (root / NAMES_FILE).is_file():
            raise AnnotationsError(
                f"dataset {root} has neither data.yaml nor classes.txt (nor train.json and val.json for COCO)"
            )
        classes = read_names_file(root / NAMES_FILE)
        sources = {split: root / "images" / split for split in SPLITS}
    labels: dict[Path, AnnotationSet | None] = {}  # each labels folder read once, for both splits
    splits = {}
    for split in SPLITS:
        samples = []
        for image in _images_of(sources[split]):
            image_root, folder = labels_folder_of(image)
            if folder not in labels:
                labels[folder] = load_annotations(folder, names=classes) if folder.is_dir() else None
            rel_path = image.relative_to(image_root).as_posix()
            samples.append(_sample(image, labels[folder], rel_path, lambda box: box.class_id + 1))
        splits[split] = samples
    return classes, splits


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


def _sample(image: Path, annotations: AnnotationSet | None, rel_path: str, number: Callable[[Box], int]) -> Sample:
    """``image``'s boxes from ``annotations`` (matched by ``rel_path``), labelled by ``number(box)`` in ``1..C``."""
    boxes, labels = np.zeros((0, 4), dtype=np.float32), []
    if annotations is not None and annotations.names(rel_path):
        try:
            width, height = oriented_size(image)
        except ImageError as error:
            raise AnnotationsError(str(error)) from None
        boxes, given = annotations.pixel_boxes(rel_path, width, height)
        labels = [number(box) for box in given]
    return Sample(path=image, boxes=boxes, labels=np.array(labels, dtype=np.int64))


def _coco_file(root: Path, split: str) -> Path | None:
    for candidate in (root / f"{split}.json", root / "annotations" / f"instances_{split}.json"):
        if candidate.is_file():
            return candidate
    return None


def _load_coco(root: Path, files: dict[str, Path]) -> tuple[list[str], dict[str, list[Sample]]]:
    documents = {split: read_coco(path) for split, path in files.items()}
    categories = sorted({item for document in documents.values() for item in document.categories.items()})
    if not categories:
        raise AnnotationsError(f"{files['train']} has no categories: training needs the class names")
    classes = [name for _, name in categories]
    number = {category_id: position + 1 for position, (category_id, _) in enumerate(categories)}
    image_root = root / "images" if (root / "images").is_dir() else root
    images = _images_of(image_root)
    rel_paths = [image.relative_to(image_root).as_posix() for image in images]
    splits = {}
    for split, document in documents.items():
        annotations = coco_annotations(document)
        annotations.check_images_exist(rel_paths, str(image_root), what="the dataset's images")
        splits[split] = [
            _sample(image, annotations, rel_path, lambda box: number[box.category_id])
            for image, rel_path in zip(images, rel_paths)
            if annotations.names(rel_path)
        ]
    return classes, splits
