"""Retrieval quality on the grocery photos (``../shared/data/grocery``): the two protocols of the benchmark.

- **iconic**: each class's catalogue image (a studio packshot) is the query, whole image; the val photos of
  that class (phone photos in a shop) are the positives.
- **photos**: each val photo is the query against the others; the photo itself is junk (left out of the
  ranking), the other photos of its class are the positives.

The index holds the val photos, one object each (``objects="whole"``). Metrics per protocol: mAP, P@1 and
recall@10, over the queries that have at least one positive.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..search.metrics import average_precision, precision_at_k, recall_at_k


@dataclass(frozen=True)
class GroceryData:
    """The val photos and their classes, and each class's iconic image.

    Attributes:
        root: the grocery folder.
        photo_class: val photo key (path relative to ``root / "val"``) → fine class id.
        iconic: fine class id → absolute path of its catalogue image.
    """

    root: Path
    photo_class: dict[str, int]
    iconic: dict[int, Path]

    @property
    def gallery(self) -> Path:
        return self.root / "val"


def load_grocery(root: Path) -> GroceryData:
    """Read ``val.txt`` (``path, fine, coarse`` per photo) and ``classes.csv`` (the iconic image paths)."""
    photo_class = {}
    for line in (root / "val.txt").read_text().splitlines():
        if line.strip():
            path, fine, _ = (part.strip() for part in line.split(","))
            photo_class[str(Path(path).relative_to("val"))] = int(fine)
    with open(root / "classes.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    iconic = {int(row[1]): root / row[4].lstrip("/") for row in rows if row[4].strip()}
    return GroceryData(root, photo_class, iconic)


# A query → the ranked item keys of the whole gallery, best first.
Ranker = Callable[[Path], list[str]]


def iconic_protocol(data: GroceryData, rank_items: Ranker) -> dict:
    """mAP, P@1, recall@10 with each class's iconic image as the query (classes with val photos only)."""
    classes = sorted(set(data.photo_class.values()) & set(data.iconic))
    rows = [_scores(rank_items(data.iconic[c]), data.photo_class, c, junk=None) for c in classes]
    return _mean(rows)


def photo_protocol(data: GroceryData, rank_items: Ranker) -> dict:
    """mAP, P@1, recall@10 with each val photo as the query against the others (itself junk)."""
    rows = []
    for key, fine in sorted(data.photo_class.items()):
        if sum(1 for other in data.photo_class.values() if other == fine) > 1:
            rows.append(_scores(rank_items(data.gallery / key), data.photo_class, fine, junk=key))
    return _mean(rows)


def _scores(ranked: list[str], photo_class: dict[str, int], fine: int, junk: str | None) -> dict:
    ranked = [key for key in ranked if key != junk]
    relevant = [photo_class.get(key) == fine for key in ranked]
    positives = sum(1 for key, other in photo_class.items() if other == fine and key != junk)
    return {
        "ap": average_precision(relevant, positives),
        "p1": precision_at_k(relevant, 1),
        "r10": recall_at_k(relevant, positives, 10),
    }


def _mean(rows: list[dict]) -> dict:
    return {
        "mAP": float(np.mean([r["ap"] for r in rows])),
        "P@1": float(np.mean([r["p1"] for r in rows])),
        "R@10": float(np.mean([r["r10"] for r in rows])),
        "queries": len(rows),
    }
