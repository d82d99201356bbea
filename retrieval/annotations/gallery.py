"""Given boxes matched to the images of a folder: one rule for ``index --objects annotations`` and training.

An image is named by its path relative to an *image root* (the gallery folder when indexing; the ``images``
folder of a training dataset), and matched without its extension:

- COCO: ``file_name: shelf/a.jpg`` names ``ROOT/shelf/a.*``.
- YOLO: the label file ``LABELS/shelf/a.txt`` names ``ROOT/shelf/a.*``.
- A bare name (``file_name: a.jpg``, or ``LABELS/a.txt`` at the top of the labels folder) also names the
  images of that name in other folders (``ROOT/deep/folder/a.jpg``) that no entry names by their path.

Boxes come out as ``x1, y1, x2, y2`` in the image's original pixels (as displayed, EXIF orientation
applied), clipped to the image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
import numpy as np

from ..errors import AnnotationsError
from ..objects import ImageObjects
from .coco import CocoBox, CocoFile, read_coco
from .yolo import NAMES_FILE, YoloBox, find_class_names, read_label_file

Box = CocoBox | YoloBox


class AnnotationSet:
    """Boxes per image, keyed by the image's relative path without extension (``shelf/a``), loaded and checked once.

    ``source``: the file or folder they came from (for messages); ``origins``: per key, where its entry is
    (``images[3] file_name 'a.jpg'``, or a label file).
    """

    def __init__(self, source: str, entries: dict[str, list[Box]], origins: dict[str, str]) -> None:
        self.source = source
        self._entries = entries
        self._origins = origins
        bare = [key for key in entries if "/" not in key]
        self._by_name = {key: entries[key] for key in bare}

    def key_for(self, rel_path: str) -> str:
        """A digest of this image's annotations: it changes exactly when its boxes or labels change."""
        raw = [(box.raw, box.label) for box in self._boxes(rel_path) or []]
        return hashlib.sha256(repr(raw).encode()).hexdigest()[:32]

    def names(self, rel_path: str) -> bool:
        """True when an entry names the image ``rel_path`` (even with no boxes: a negative)."""
        return self._boxes(rel_path) is not None

    def check_images_exist(self, rel_paths: list[str], root: str, what: str = "the gallery") -> None:
        """Raise ``AnnotationsError`` naming the entries that name none of the images ``rel_paths``: ``what``
        (the gallery, the dataset's images) in the folder ``root``."""
        stems = {stem(p) for p in rel_paths}
        names = {PurePosixPath(s).name for s in stems}
        missing = [
            self._origins[key]
            for key in self._entries
            if key not in stems and not (key in self._by_name and key in names)
        ]
        if missing:
            shown = "; ".join(missing[:3]) + (f"; and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise AnnotationsError(
                f"{self.source}: {len(missing)} annotated images are not in {what} {root}: {shown}. "
                "Fix the file names or give the folder they are relative to"
            )

    def pixel_boxes(self, rel_path: str, width: int, height: int) -> tuple[np.ndarray, list[Box]]:
        """The boxes of one image as ``(N, 4)`` float32 ``x1, y1, x2, y2`` in its original pixels, clipped to its
        ``width`` x ``height``, with the entries they came from. An image no entry names has none."""
        pixels = []
        boxes = self._boxes(rel_path) or []
        for box in boxes:
            x1, y1, x2, y2 = box.pixels(width, height)
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
            if x2 <= x1 or y2 <= y1:
                raise AnnotationsError(f"{self.source}: {box.where} lies outside {rel_path} ({width}x{height} pixels)")
            pixels.append((x1, y1, x2, y2))
        return np.array(pixels, dtype=np.float32).reshape(-1, 4), boxes

    def objects_for(self, rel_path: str, width: int, height: int) -> ImageObjects:
        """The boxes of one image with their class names (see ``pixel_boxes``), as not-detected objects."""
        pixels, boxes = self.pixel_boxes(rel_path, width, height)
        return ImageObjects.given(pixels, [box.label for box in boxes])

    def _boxes(self, rel_path: str) -> list[Box] | None:
        key = stem(rel_path)
        boxes = self._entries.get(key)
        return boxes if boxes is not None else self._by_name.get(PurePosixPath(key).name)


def load_annotations(path: str | Path, names: list[str] | None = None) -> AnnotationSet:
    """Read a COCO JSON file or a YOLO labels folder; raise ``AnnotationsError`` naming the bad entry or line.

    ``names``: a YOLO folder's class names; by default those of its ``classes.txt`` or ``data.yaml`` (in the
    folder or its parent), or the class numbers.
    """
    path = Path(path)
    if path.is_dir():
        return _yolo_set(path, names if names is not None else find_class_names(path))
    if path.is_file():
        return coco_annotations(read_coco(path))
    raise AnnotationsError(f"annotations {path} not found: give a COCO JSON file or a YOLO labels folder")


def coco_annotations(document: CocoFile) -> AnnotationSet:
    """The boxes of a COCO file already read (``read_coco``), keyed by ``file_name``."""
    entries: dict[str, list[Box]] = {}
    origins: dict[str, str] = {}
    for image in document.images:
        key = stem(image.file_name)
        entries.setdefault(key, []).extend(image.boxes)
        origins[key] = image.where
    return AnnotationSet(str(document.path), entries, origins)


def _yolo_set(folder: Path, names: list[str] | None) -> AnnotationSet:
    entries: dict[str, list[Box]] = {}
    origins: dict[str, str] = {}
    for label_file in sorted(folder.rglob("*.txt")):
        if label_file.name == NAMES_FILE:
            continue
        key = stem(label_file.relative_to(folder).as_posix())
        entries[key] = read_label_file(label_file, names)
        origins[key] = str(label_file)
    if not entries:
        raise AnnotationsError(f"YOLO labels folder {folder} has no .txt label files")
    return AnnotationSet(str(folder), entries, origins)


def stem(rel_path: str) -> str:
    """``"a/b.jpg"`` → ``"a/b"``: the key that matches images with their annotations."""
    path = PurePosixPath(rel_path)
    return str(path.with_suffix("")) if path.suffix else str(path)
