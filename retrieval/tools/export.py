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

import numpy as np
import torch
from openpyxl import Workbook
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..index.snapshot import IndexSnapshot
from ..validation import check_choice, check_output_folder
from .names import EXPORT_FORMATS

SUMMARY_COLUMNS = ("image", "boxes", "embedding_size", "embedding_file")


def export_index(
    index_dir: str | os.PathLike, out_format: str, out: str | os.PathLike, progress: bool = True
) -> list[Path]:
    """Write ``index_dir``'s embeddings to ``out`` in ``out_format`` (``EXPORT_FORMATS``); returns the files
    written."""
    check_choice("--format", out_format, EXPORT_FORMATS)
    snapshot = IndexSnapshot.load(index_dir)
    vectors = snapshot.vectors.reconstruct(snapshot.object_ids)  # rows in object-id order, as the snapshot's
    out = check_output_folder("--out", out)
    if out_format == "per-image":
        return _per_image(snapshot, vectors, out, progress)
    return _features(snapshot, vectors, out)


def embedding_file_name(key: str) -> str:
    """``sub/a.jpg`` → ``embeddings/sub__a.jpg.npy``: one flat folder, the extension kept so names stay unique
    (a frame's ``v.mp4#t=1.000`` → ``embeddings/v.mp4#t=1.000.npy``)."""
    return "embeddings/" + key.replace("/", "__") + ".npy"


def _per_image(snapshot: IndexSnapshot, vectors: np.ndarray, out: Path, progress: bool) -> list[Path]:
    (out / "embeddings").mkdir(exist_ok=True)
    rows, written = [], []
    frames = snapshot.frames
    order = sorted(snapshot.item_keys, key=lambda i: (snapshot.image_paths[i], frames[i].time if i in frames else 0))
    for image_id in tqdm(order, unit="item", desc="exporting", disable=not progress, file=sys.stderr):
        key = snapshot.item_keys[image_id]
        mine = np.flatnonzero(snapshot.object_image == image_id)
        name = embedding_file_name(key)
        buffer = io.BytesIO()
        np.save(buffer, vectors[mine].astype(np.float32))
        atomic_write_bytes(out / name, buffer.getvalue())
        written.append(out / name)
        rows.append((key, len(mine), int(vectors.shape[1]), name))
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


def _features(snapshot: IndexSnapshot, vectors: np.ndarray, out: Path) -> list[Path]:
    half = vectors.astype(np.float16)
    buffer = io.BytesIO()
    np.save(buffer, half)
    atomic_write_bytes(out / "fts.npy", buffer.getvalue())
    buffer = io.BytesIO()
    torch.save(torch.from_numpy(half), buffer)
    atomic_write_bytes(out / "fts.pth", buffer.getvalue())
    paths = [str(snapshot.absolute_path(image_id)) for image_id in snapshot.object_image]
    atomic_write_text(out / "img_list.json", json.dumps(paths, indent=1))
    frames = snapshot.frames
    boxes = [
        {
            "object_id": int(object_id),
            "image": path,
            "item": snapshot.item_keys[int(item_id)],
            "time": frames[int(item_id)].time if int(item_id) in frames else None,
            "box": [float(v) for v in box],
            "label": label,
            "detection_score": None if np.isnan(score) else float(score),
        }
        for object_id, item_id, path, box, label, score in zip(
            snapshot.object_ids, snapshot.object_image, paths, snapshot.boxes, snapshot.labels, snapshot.scores
        )
    ]
    atomic_write_text(out / "boxes.json", json.dumps(boxes, indent=1))
    return [out / name for name in ("fts.npy", "fts.pth", "img_list.json", "boxes.json")]
