"""Boxes users already have: a COCO JSON file or a YOLO labels folder.

Both become, per gallery image (its path relative to the gallery root), a list
of boxes ``x1, y1, x2, y2`` in original pixels with class names.

- COCO: ``images[].file_name`` relative to the gallery root (or a bare file
  name when it is unique), ``annotations[].bbox = [x, y, width, height]`` in
  pixels, ``categories[].name``.
- YOLO: one ``.txt`` per image in the labels folder, at the image's relative
  path with ``.txt`` (or at its bare name), each line ``class cx cy w h``
  normalised to [0, 1] (a sixth column, a score, is ignored). Class names from
  ``classes.txt`` or ``data.yaml`` (``names:``) in the labels folder or its
  parent; otherwise the class number is the name.

Coordinates refer to the image as displayed (EXIF orientation applied).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from ..errors import AnnotationsError
from ..objects import ImageObjects


@dataclass(frozen=True)
class _CocoBox:
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    label: str
    where: str  # "annotations[12]" for messages


@dataclass(frozen=True)
class _YoloBox:
    centre_size: tuple[float, float, float, float]  # cx, cy, w, h normalised
    label: str
    where: str  # "labels/a.txt line 3"


class AnnotationSet:
    """Boxes per gallery image, loaded and checked once.

    Images are matched by their path relative to the gallery root without the
    extension (``shelf/a.jpg`` ↔ ``shelf/a.txt`` or ``file_name: shelf/a.jpg``),
    or by bare file name when only one annotated image has it.
    """

    def __init__(
        self, source: str, entries: dict[str, list], by_name: dict[str, list], origins: dict[str, str]
    ) -> None:
        self.source = source
        self._entries = entries
        self._by_name = by_name
        self._origins = origins

    def key_for(self, rel_path: str) -> str:
        """A digest of this image's annotations: it changes exactly when its boxes or labels change."""
        raw = [(getattr(box, "bbox", None) or box.centre_size, box.label) for box in self._boxes(rel_path)]
        return hashlib.sha256(repr(raw).encode()).hexdigest()[:32]

    def check_images_exist(self, rel_paths: list[str], gallery: str) -> None:
        """Raise ``AnnotationsError`` naming the entries whose image is not among ``rel_paths``."""
        stems = {_stem(p) for p in rel_paths}
        names = {PurePosixPath(s).name for s in stems}
        missing = [
            self._origins[key]
            for key in self._entries
            if key not in stems and not (PurePosixPath(key).name in self._by_name and PurePosixPath(key).name in names)
        ]
        if missing:
            shown = "; ".join(missing[:3]) + (f"; and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise AnnotationsError(
                f"{self.source}: {len(missing)} annotated images are not in the gallery {gallery}: {shown}. "
                "Fix the file names or give the gallery folder they are relative to"
            )

    def _boxes(self, rel_path: str) -> list:
        boxes = self._entries.get(_stem(rel_path))
        if boxes is None:
            boxes = self._by_name.get(PurePosixPath(_stem(rel_path)).name, [])
        return boxes

    def objects_for(self, rel_path: str, width: int, height: int) -> ImageObjects:
        """The boxes of one image, in its original pixels, clipped to its ``width`` x ``height``.

        An image the annotations do not name has no objects.
        """
        pixels, labels = [], []
        for box in self._boxes(rel_path):
            x1, y1, x2, y2 = _to_pixels(box, width, height)
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
            if x2 <= x1 or y2 <= y1:
                raise AnnotationsError(f"{self.source}: {box.where} lies outside {rel_path} ({width}x{height} pixels)")
            pixels.append((x1, y1, x2, y2))
            labels.append(box.label)
        return ImageObjects.given(np.array(pixels, dtype=np.float32).reshape(-1, 4), labels)


def load_annotations(path: str | Path) -> AnnotationSet:
    """Read a COCO JSON file or a YOLO labels folder; raise ``AnnotationsError`` naming the bad entry or line."""
    path = Path(path)
    if path.is_dir():
        entries, origins = _load_yolo(path)
    elif path.is_file():
        entries, origins = _load_coco(path)
    else:
        raise AnnotationsError(f"annotations {path} not found: give a COCO JSON file or a YOLO labels folder")
    by_name: dict[str, list] = {}
    counts: dict[str, int] = {}
    for key, boxes in entries.items():
        name = PurePosixPath(key).name
        counts[name] = counts.get(name, 0) + 1
        by_name[name] = boxes
    unique_names = {name: boxes for name, boxes in by_name.items() if counts[name] == 1}
    return AnnotationSet(str(path), entries, unique_names, origins)


def _to_pixels(box: _CocoBox | _YoloBox, width: int, height: int) -> tuple[float, float, float, float]:
    if isinstance(box, _CocoBox):
        return box.bbox
    cx, cy, w, h = box.centre_size
    return (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height


def _load_coco(path: Path) -> tuple[dict[str, list[_CocoBox]], dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationsError(f"annotations {path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise AnnotationsError(f"annotations {path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations"), list)
    ):
        raise AnnotationsError(f"annotations {path} is not COCO JSON: it needs 'images' and 'annotations' lists")
    categories = {}
    for i, category in enumerate(data.get("categories") or []):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise AnnotationsError(f"{path}: categories[{i}] needs 'id' and 'name'")
        categories[category["id"]] = str(category["name"])
    files: dict[object, tuple[str, dict]] = {}
    origins: dict[str, str] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise AnnotationsError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        key = PurePosixPath(image["file_name"].replace("\\", "/")).as_posix()
        files[image["id"]] = (key, image)
        origins[_stem(key)] = f"images[{i}] file_name {key!r}"
    entries: dict[str, list[_CocoBox]] = {_stem(key): [] for key, _ in files.values()}
    for i, annotation in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(annotation, dict):
            raise AnnotationsError(f"{path}: {where} is not an object")
        if annotation.get("image_id") not in files:
            raise AnnotationsError(
                f"{path}: {where} has image_id {annotation.get('image_id')!r}, which no images[] entry has"
            )
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise AnnotationsError(f"{path}: {where} bbox {bbox!r} must be [x, y, width, height] numbers")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise AnnotationsError(f"{path}: {where} bbox {bbox} has zero or negative size")
        key, image = files[annotation["image_id"]]
        if x < 0 or y < 0 or _exceeds(x + w, image.get("width")) or _exceeds(y + h, image.get("height")):
            raise AnnotationsError(
                f"{path}: {where} bbox {bbox} lies outside image {key} "
                f"({image.get('width')}x{image.get('height')} pixels)"
            )
        label = categories.get(annotation.get("category_id"), str(annotation.get("category_id")))
        entries[_stem(key)].append(_CocoBox((x, y, x + w, y + h), label, where))
    return entries, origins


def _load_yolo(folder: Path) -> tuple[dict[str, list[_YoloBox]], dict[str, str]]:
    names = _yolo_class_names(folder)
    entries: dict[str, list[_YoloBox]] = {}
    origins: dict[str, str] = {}
    for label_file in sorted(folder.rglob("*.txt")):
        if label_file.name == "classes.txt":
            continue
        rel = _stem(label_file.relative_to(folder).as_posix())
        boxes = []
        for number, line in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{label_file} line {number}"
            boxes.append(parse_yolo_line(line, where, names))
        entries[rel] = boxes
        origins[rel] = str(label_file)
    if not entries:
        raise AnnotationsError(f"YOLO labels folder {folder} has no .txt label files")
    return entries, origins


def parse_yolo_line(line: str, where: str, names: list[str] | None) -> _YoloBox:
    """One YOLO label line ``class cx cy w h`` (normalised; a sixth column is ignored), checked; errors name
    ``where`` (file and line). The box's label is ``names[class]`` (the class number without names)."""
    parts = line.split()
    if len(parts) not in (5, 6):
        raise AnnotationsError(f"{where}: expected 'class cx cy w h', got {line.strip()!r}")
    try:
        class_id = int(parts[0])
        cx, cy, w, h = (float(v) for v in parts[1:5])
    except ValueError:
        raise AnnotationsError(f"{where}: expected an integer class and four numbers, got {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
        raise AnnotationsError(f"{where}: box size must be positive, got {line.strip()!r}")
    if cx - w / 2 < -1e-3 or cy - h / 2 < -1e-3 or cx + w / 2 > 1 + 1e-3 or cy + h / 2 > 1 + 1e-3:
        raise AnnotationsError(
            f"{where}: box {line.strip()!r} lies outside the image (coordinates must be normalised to 0..1)"
        )
    if names is not None and not 0 <= class_id < len(names):
        raise AnnotationsError(f"{where}: class {class_id} is not among the {len(names)} class names")
    label = names[class_id] if names is not None else str(class_id)
    return _YoloBox((cx, cy, w, h), label, where)


def _yolo_class_names(folder: Path) -> list[str] | None:
    for base in (folder, folder.parent):
        classes_txt = base / "classes.txt"
        if classes_txt.is_file():
            return [line.strip() for line in classes_txt.read_text(encoding="utf-8").splitlines() if line.strip()]
        data_yaml = base / "data.yaml"
        if data_yaml.is_file():
            try:
                names = (yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}).get("names")
            except yaml.YAMLError as error:
                raise AnnotationsError(f"{data_yaml} is not valid YAML: {error}") from None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
            raise AnnotationsError(f"{data_yaml} has no 'names' list")
    return None


def _stem(rel_path: str) -> str:
    """``"a/b.jpg"`` → ``"a/b"``: the key that matches images with their annotations."""
    path = PurePosixPath(rel_path)
    return str(path.with_suffix("")) if path.suffix else str(path)


def _exceeds(edge: float, limit: object) -> bool:
    return _is_number(limit) and edge > float(limit) + 0.5  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
