"""A COCO detection file, read and checked: its images, their boxes and the category names.

``images[]`` need ``id`` and ``file_name`` (``width`` / ``height`` optional, checked against the boxes when
given); ``annotations[]`` need ``image_id`` and ``bbox = [x, y, width, height]`` in original pixels;
``categories[]`` need ``id`` and ``name``. Boxes come out as ``x1, y1, x2, y2`` original pixels. Errors
are ``AnnotationsError`` naming the file and the entry (``annotations[12]``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import AnnotationsError


@dataclass(frozen=True)
class CocoBox:
    """One annotation: ``box`` ``x1, y1, x2, y2`` in the image's original pixels."""

    box: tuple[float, float, float, float]
    category_id: object
    label: str  # the category's name (its id as text where the file has no categories)
    where: str  # "annotations[12]", for messages

    @property
    def raw(self) -> tuple[float, ...]:
        """The box as the file gives it (what a change of annotation is judged on)."""
        return self.box

    def pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``x1, y1, x2, y2`` in pixels of an image ``width`` x ``height`` (COCO boxes already are)."""
        return self.box


@dataclass(frozen=True)
class CocoImage:
    """An ``images[]`` entry: ``file_name`` with ``/`` separators, and its boxes in file order."""

    id: object
    file_name: str
    width: object
    height: object
    where: str  # "images[3] file_name 'shelf/a.jpg'"
    boxes: list[CocoBox] = field(default_factory=list)


@dataclass(frozen=True)
class CocoFile:
    """A COCO file: images in file order, category names by id."""

    path: Path
    images: list[CocoImage]
    categories: dict[object, str]


def read_coco(path: str | Path) -> CocoFile:
    """Read and check the COCO file ``path``; raise ``AnnotationsError`` naming the file and the bad entry."""
    path = Path(path)
    data = _read_json(path)
    categories = _categories(path, data.get("categories") or [])
    images: dict[object, CocoImage] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise AnnotationsError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        file_name = PurePosixPath(entry["file_name"].replace("\\", "/")).as_posix()
        where = f"images[{i}] file_name {file_name!r}"
        images[entry["id"]] = CocoImage(entry["id"], file_name, entry.get("width"), entry.get("height"), where)
    for i, annotation in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(annotation, dict):
            raise AnnotationsError(f"{path}: {where} is not an object")
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise AnnotationsError(
                f"{path}: {where} has image_id {annotation.get('image_id')!r}, which no images[] entry has"
            )
        category_id = annotation.get("category_id")
        if categories and category_id not in categories:
            raise AnnotationsError(f"{path}: {where} has category_id {category_id!r}, which no categories[] entry has")
        label = categories.get(category_id, str(category_id))
        image.boxes.append(CocoBox(_box(path, where, annotation.get("bbox"), image), category_id, label, where))
    return CocoFile(path, list(images.values()), categories)


def _read_json(path: Path) -> dict:
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
    return data


def _categories(path: Path, entries: object) -> dict[object, str]:
    if not isinstance(entries, list):
        raise AnnotationsError(f"{path}: 'categories' must be a list of {{'id', 'name'}} entries")
    categories = {}
    for i, category in enumerate(entries):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise AnnotationsError(f"{path}: categories[{i}] needs 'id' and 'name'")
        categories[category["id"]] = str(category["name"])
    return categories


def _box(path: Path, where: str, bbox: object, image: CocoImage) -> tuple[float, float, float, float]:
    """``[x, y, w, h]`` checked (numbers, positive size, inside the image's stated size) → ``x1, y1, x2, y2``."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise AnnotationsError(f"{path}: {where} bbox {bbox!r} must be [x, y, width, height] numbers")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise AnnotationsError(f"{path}: {where} bbox {bbox} has zero or negative size")
    if x < 0 or y < 0 or _exceeds(x + w, image.width) or _exceeds(y + h, image.height):
        raise AnnotationsError(
            f"{path}: {where} bbox {bbox} lies outside image {image.file_name} ({image.width}x{image.height} pixels)"
        )
    return x, y, x + w, y + h


def _exceeds(edge: float, limit: object) -> bool:
    return _is_number(limit) and edge > float(limit) + 0.5  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
