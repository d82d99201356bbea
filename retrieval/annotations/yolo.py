"""YOLO labels, read and checked: one ``.txt`` per image, a line ``class cx cy w h`` per box.

``cx cy w h`` are normalised to ``[0, 1]`` of the image as displayed (EXIF orientation applied); a sixth
column (a score) is ignored; blank lines are skipped. Class names come from ``classes.txt`` (one a line)
or from ``data.yaml``'s ``names`` (a list, or a dict of number → name). Errors are ``AnnotationsError``
naming the file and the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import AnnotationsError

NAMES_FILE = "classes.txt"


@dataclass(frozen=True)
class YoloBox:
    """One label line: ``centre_size`` ``cx, cy, w, h`` normalised to the image."""

    class_id: int
    centre_size: tuple[float, float, float, float]
    label: str  # names[class_id], or the class number as text without names
    where: str  # "labels/a.txt line 3", for messages

    @property
    def category_id(self) -> int:
        return self.class_id

    @property
    def raw(self) -> tuple[float, ...]:
        """The box as the file gives it (what a change of annotation is judged on)."""
        return self.centre_size

    def pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``x1, y1, x2, y2`` in pixels of the image ``width`` x ``height`` the box is normalised to."""
        cx, cy, w, h = self.centre_size
        return (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height


def parse_line(line: str, where: str, names: list[str] | None) -> YoloBox:
    """One label line ``class cx cy w h``, checked; errors name ``where`` (file and line).

    ``names``: the class names (a class beyond them is an error), or ``None`` to label boxes by number.
    """
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
    return YoloBox(class_id, (cx, cy, w, h), label, where)


def read_label_file(path: Path, names: list[str] | None) -> list[YoloBox]:
    """The boxes of one label file, in line order (an empty file: no boxes)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [parse_line(line, f"{path} line {number}", names) for number, line in enumerate(lines, 1) if line.strip()]


def read_names_file(path: Path) -> list[str]:
    """Class names from a ``classes.txt``: one a line, blank lines skipped."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_data_yaml(path: Path) -> dict:
    """An Ultralytics ``data.yaml`` as a dict; invalid YAML is an ``AnnotationsError`` naming the file."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise AnnotationsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise AnnotationsError(f"{path} is not a YAML mapping (names:, train:, val:)")
    return config


def names_of(config: dict, where: Path) -> list[str]:
    """``config['names']`` (a list, or a dict of number → name, ordered by number) as a list."""
    names = config.get("names")
    if isinstance(names, dict) and names:
        return [str(names[key]) for key in sorted(names)]
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    raise AnnotationsError(f"{where} has no 'names' (a list of class names, or a dict of number → name)")


def find_class_names(folder: Path) -> list[str] | None:
    """The names in ``classes.txt`` or ``data.yaml`` in ``folder`` or its parent (the first found); ``None``."""
    for base in (folder, folder.parent):
        if (base / NAMES_FILE).is_file():
            return read_names_file(base / NAMES_FILE)
        if (base / "data.yaml").is_file():
            return names_of(read_data_yaml(base / "data.yaml"), base / "data.yaml")
    return None


def labels_folder_of(image: Path) -> tuple[Path, Path]:
    """Ultralytics' rule: the ``images`` folder nearest ``image`` and the ``labels`` folder beside it.

    ``data/images/train/a.jpg`` → ``(data/images, data/labels)``: its label file is ``data/labels/train/a.txt``.
    """
    parts = image.parts
    if "images" not in parts[:-1]:
        raise AnnotationsError(f"{image}: YOLO images must lie under an 'images' folder (labels under 'labels')")
    position = len(parts) - 2 - parts[-2::-1].index("images")
    return Path(*parts[: position + 1]), Path(*parts[:position], "labels")
