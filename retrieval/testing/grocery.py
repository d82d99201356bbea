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
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..search.metrics import average_precision, precision_at_k, recall_at_k
from ..search.queries import Query
from ..search.rerank import Rerank
from ..search.searcher import Searcher, rank_many


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


def box_objects(box: tuple[float, float] | None, data: GroceryData, work: Path) -> dict:
    """The object settings: each whole photo, or the centred ``box`` of each (a COCO file written in ``work``)."""
    if box is None:
        return {"objects": "whole"}
    images, annotations = [], []
    for number, key in enumerate(sorted(data.photo_class), start=1):
        with Image.open(data.gallery / key) as image:
            width, height = image.size
        x1, y1, x2, y2 = centred_box(box, width, height)
        images.append({"id": number, "file_name": key, "width": width, "height": height})
        annotations.append({"id": number, "image_id": number, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]})
    path = work / f"boxes-{box[0]}-{box[1]}.json"
    categories = [{"id": 1, "name": "product"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return {"objects": "annotations", "annotations": str(path)}


def centred_box(box: tuple[float, float], width: int, height: int) -> list[float]:
    """``x1, y1, x2, y2`` pixels of a box of ``box`` = (width, height) fractions centred in the image."""
    box_width, box_height = width * box[0], height * box[1]
    x1, y1 = (width - box_width) / 2, (height - box_height) / 2
    return [x1, y1, x1 + box_width, y1 + box_height]


def iconic_ranker(searcher: Searcher, data: GroceryData, rerank: Rerank, box: tuple[float, float] | None):
    """Rank the gallery for every iconic image in one batch, then answer ``rank_items`` from that."""
    paths = sorted(data.iconic.values())
    queries = []
    for path in paths:
        with Image.open(path) as image:
            queries.append(Query(path, centred_box(box, *image.size) if box else None))
    answers = searcher.query_many(queries, top_k=len(data.photo_class), rerank=rerank)
    ranked = {path: [result.item for result in answer] for path, answer in zip(paths, answers)}
    return lambda path: ranked[path]


def photo_ranker(searcher: Searcher, rerank: Rerank):
    """Each gallery photo's query vector is its stored one (what embedding it again gives), ranked in one batch."""
    snapshot = searcher.snapshot
    ids = snapshot.vectors.ids()
    found = snapshot.objects(ids)
    answers = rank_many(snapshot, snapshot.vectors.reconstruct(ids), top_k=snapshot.held_items, rerank=rerank)
    ranked = {}
    for item_id, answer in zip(found.item[found.find(ids)].tolist(), answers):
        ranked[found.items[item_id].key] = [result.item for result in answer]
    return lambda path: ranked[str(Path(path).relative_to(snapshot.gallery_root))]
