"""``retrieval export``: an index's embeddings in the formats earlier projects produced.

- ``per-image`` (FasterRCNN_Embed_Extract): ``embeddings/<item>.npy`` per indexed item, ``(N, D)`` float32
  with one row per object in object-id order (``<item>`` is its key with ``/`` as ``__``: an image's gallery
  path, a video frame's ``clip.mp4#t=12.000``), and ``summary.xlsx`` + ``summary.csv``: image (the item key),
  boxes, embedding_size, embedding_file.
- ``features`` (the feature extractor): ``fts.npy`` ``(M, D)`` float16 and ``fts.pth`` (the same matrix as
  a torch tensor), ``img_list.json`` (each row's image path, absolute; a frame's: its video's), and beside
  them ``boxes.json`` (each row's object id, image, item key, time in seconds for a frame (else null), box in
  original pixels, label and detection score).

Vectors come from the FAISS index: exact for ``flat`` and ``hnsw``, decoded (approximate) for ``ivf``/``ivfpq``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from openpyxl import Workbook
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..index.rows import ItemRow
from ..index.snapshot import IndexSnapshot
from ..validation import check_choice, check_output_folder
from .names import EXPORT_FORMATS

SUMMARY_COLUMNS = ("image", "boxes", "embedding_size", "embedding_file")
EXPORT_PAGE = 1000  # items looked up at a time


def export_index(
    index_dir: str | os.PathLike, out_format: str, out: str | os.PathLike, progress: bool = True
) -> list[Path]:
    """Write ``index_dir``'s embeddings to ``out`` in ``out_format`` (``EXPORT_FORMATS``); returns the files
    written."""
    check_choice("--format", out_format, EXPORT_FORMATS)
    snapshot = IndexSnapshot.load(index_dir)
    out = check_output_folder("--out", out)
    if out_format == "per-image":
        return _per_image(snapshot, out, progress)
    return _features(snapshot, out)


def embedding_file_name(key: str) -> str:
    """``sub/a.jpg`` → ``embeddings/sub__a.jpg.npy``: one flat folder, the extension kept so names stay unique
    (a frame's ``v.mp4#t=1.000`` → ``embeddings/v.mp4#t=1.000.npy``)."""
    return "embeddings/" + key.replace("/", "__") + ".npy"


def _per_image(snapshot: IndexSnapshot, out: Path, progress: bool) -> list[Path]:
    (out / "embeddings").mkdir(exist_ok=True)
    rows, written = [], []
    with tqdm(total=snapshot.held_items, unit="item", desc="exporting", disable=not progress, file=sys.stderr) as bar:
        for items in _item_pages(snapshot):
            found = snapshot.item_objects([item.id for item in items])
            vectors = snapshot.vectors.reconstruct(found.ids).reshape(len(found), snapshot.vectors.dimension)
            for item in items:
                name = embedding_file_name(item.key)
                buffer = io.BytesIO()
                np.save(buffer, vectors[found.item == item.id].astype(np.float32))
                atomic_write_bytes(out / name, buffer.getvalue())
                written.append(out / name)
                rows.append((item.key, int(np.count_nonzero(found.item == item.id)), snapshot.vectors.dimension, name))
            bar.update(len(items))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", text.getvalue())
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "embeddings"
    sheet.append(SUMMARY_COLUMNS)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    atomic_write_bytes(out / "summary.xlsx", buffer.getvalue())
    return written + [out / "summary.csv", out / "summary.xlsx"]


def _item_pages(snapshot: IndexSnapshot) -> Iterator[list[ItemRow]]:
    """Every indexed image and frame, by path and then a frame's time, ``EXPORT_PAGE`` items at a time."""
    offset = 0
    while items := snapshot.listing(offset, EXPORT_PAGE, by_time=True):
        yield items
        offset += len(items)


def _features(snapshot: IndexSnapshot, out: Path) -> list[Path]:
    parts, paths, boxes = [], [], []
    for found in snapshot.chunks():
        parts.append(snapshot.vectors.reconstruct(found.ids).astype(np.float16))
        rows = zip(found.ids, found.item, found.boxes, found.labels, found.scores)
        for object_id, item_id, box, label, score in rows:
            item = found.items[int(item_id)]
            paths.append(str(snapshot.absolute_path(item)))
            boxes.append({
                "object_id": int(object_id),
                "image": paths[-1],
                "item": item.key,
                "time": None if item.frame is None else item.frame.time,
                "box": [float(v) for v in box],
                "label": label,
                "detection_score": None if np.isnan(score) else float(score),
            })
    half = np.concatenate(parts) if parts else np.zeros((0, snapshot.vectors.dimension), np.float16)
    buffer = io.BytesIO()
    np.save(buffer, half)
    atomic_write_bytes(out / "fts.npy", buffer.getvalue())
    buffer = io.BytesIO()
    torch.save(torch.from_numpy(half), buffer)
    atomic_write_bytes(out / "fts.pth", buffer.getvalue())
    atomic_write_text(out / "img_list.json", json.dumps(paths, indent=1))
    atomic_write_text(out / "boxes.json", json.dumps(boxes, indent=1))
    return [out / name for name in ("fts.npy", "fts.pth", "img_list.json", "boxes.json")]
