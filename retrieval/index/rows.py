"""Rows of a store's metadata looked up by id, for the few objects and items a query or a page needs.

Every function takes an open read-only connection (``metadata.connect(store, read_only=True)``) inside a
read transaction, and the store's schema version (``metadata.schema_version``); schemas 1 and 2 are read
too (their items are images; schema 1's ``images`` table has no key: its path is the key). Ids go to SQLite
in chunks of ``CHUNK`` (under SQLite's smallest limit on parameters).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .metadata import SCHEMA_VERSION

CHUNK = 900
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class FrameRef:
    """Where a frame item is in its video: the video's path (relative to the gallery) and row id, the frame's
    number in the video (0 = the first decoded), its time in seconds, and its position among the video's
    indexed frames in time order."""

    video: str
    video_id: int
    number: int
    time: float
    position: int


@dataclass(frozen=True)
class ItemRow:
    """One indexed item that holds objects (an image or a video frame): its row id, key (a folder's image: its
    path; a frame: ``<video path>#t=<seconds>``), the path of its file relative to the gallery root (a frame's:
    its video's), and for a frame where it is in its video."""

    id: int
    key: str
    path: str
    frame: FrameRef | None = None


def items_table(version: int) -> str:
    """A ``SELECT`` of every item as ``(id, key, path, status, error, kind, frame, time)`` in any schema."""
    if version == 1:
        return "SELECT id, path AS key, path, status, error, 'image' AS kind, NULL AS frame, NULL AS time FROM images"
    columns = "kind, frame, time" if version == SCHEMA_VERSION else "'image' AS kind, NULL AS frame, NULL AS time"
    return f"SELECT id, key, path, status, error, {columns} FROM items"


def objects_table(version: int) -> str:
    """A ``SELECT`` of every object as ``(id, item_id, x1, y1, x2, y2, label, score)`` in any schema."""
    item = "image_id" if version == 1 else "item_id"
    return f"SELECT id, {item} AS item_id, x1, y1, x2, y2, label, score FROM objects"


def chunked(values: Iterable, size: int = CHUNK) -> Iterator[list]:
    """``values`` in lists of at most ``size``."""
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def object_rows(db: sqlite3.Connection, version: int, ids: np.ndarray) -> list[tuple]:
    """``(id, item_id, x1, y1, x2, y2, label, score)`` of the objects among ``ids`` (``(N,)`` int64) that
    exist, sorted by id."""
    rows = []
    for part in chunked(np.unique(ids).tolist()):
        marks = ",".join("?" * len(part))
        rows += db.execute(f"SELECT * FROM ({objects_table(version)}) WHERE id IN ({marks})", part).fetchall()
    return sorted(rows)


def item_rows(db: sqlite3.Connection, version: int, ids: Iterable[int]) -> dict[int, ItemRow]:
    """The indexed images and frames among item ids ``ids``, by id (an id of no such item is left out)."""
    rows = []
    for part in chunked(sorted({i for i in ids if INT64[0] <= i <= INT64[1]})):  # SQLite's integers: 64 bits
        marks = ",".join("?" * len(part))
        rows += db.execute(
            f"SELECT id, key, path, kind, frame, time FROM ({items_table(version)}) "
            f"WHERE id IN ({marks}) AND status = 'indexed' AND kind != 'video'",
            part,
        ).fetchall()
    refs = frame_refs(db, version, {row[2] for row in rows if row[3] == "frame"})
    return {row[0]: ItemRow(row[0], row[1], row[2], refs.get(row[0])) for row in rows}


def frame_refs(db: sqlite3.Connection, version: int, paths: Iterable[str]) -> dict[int, FrameRef]:
    """``FrameRef`` of every indexed frame of the videos at ``paths``, by item id. The frames of a video still
    being indexed (no row of its own yet) get a negative video id below -1 of their own."""
    if version != SCHEMA_VERSION:
        return {}
    frames, videos = [], {}
    for part in chunked(sorted(set(paths))):
        marks = ",".join("?" * len(part))
        frames += db.execute(
            f"SELECT id, path, frame, time FROM items WHERE path IN ({marks}) AND kind = 'frame' "
            "AND status = 'indexed' ORDER BY path, time, key",
            part,
        ).fetchall()
        videos.update(db.execute(
            f"SELECT path, id FROM items WHERE path IN ({marks}) AND kind = 'video' AND status = 'indexed'", part
        ).fetchall())
    by_path: dict[str, list[tuple]] = {}
    for row in frames:
        by_path.setdefault(row[1], []).append(row)
    refs = {}
    for path, rows in by_path.items():
        video_id = videos.get(path, -2 - min(row[0] for row in rows))
        for position, (item_id, _, number, time) in enumerate(rows):
            refs[item_id] = FrameRef(path, video_id, int(number), float(time), position)
    return refs


def listed_items(db: sqlite3.Connection, version: int, offset: int, limit: int, by_time: bool = False) -> list[int]:
    """Ids of the indexed images and frames, ``limit`` of them from ``offset``, sorted by path and then key
    (``by_time``: by path, then a frame's time, then key)."""
    order = "path, CASE WHEN kind = 'frame' THEN time ELSE 0 END, key" if by_time else "path, key"
    rows = db.execute(
        f"SELECT id FROM ({items_table(version)}) WHERE status = 'indexed' AND kind != 'video' "
        f"ORDER BY {order} LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    return [row[0] for row in rows]


def objects_of_items(db: sqlite3.Connection, version: int, item_ids: Iterable[int], below: int) -> list[tuple]:
    """``objects``' rows (``object_rows``) of the items ``item_ids`` with ids below ``below``, sorted by id."""
    rows = []
    for part in chunked(sorted(set(item_ids))):
        marks = ",".join("?" * len(part))
        rows += db.execute(
            f"SELECT * FROM ({objects_table(version)}) WHERE item_id IN ({marks}) AND id < ?", (*part, below)
        ).fetchall()
    return sorted(rows)


def objects_from(db: sqlite3.Connection, version: int, start: int, below: int, limit: int) -> list[tuple]:
    """At most ``limit`` object rows (``object_rows``) with ids from ``start`` to below ``below``, by id."""
    return db.execute(
        f"SELECT * FROM ({objects_table(version)}) WHERE id >= ? AND id < ? ORDER BY id LIMIT ?", (start, below, limit)
    ).fetchall()


def named_paths(db: sqlite3.Connection, version: int, names: Iterable[str]) -> tuple[set[str], set[str]]:
    """``(indexed, skipped)``: those of ``names`` that are the path of an indexed image or frame, and those that
    are the key of a skipped item."""
    indexed: set[str] = set()
    skipped: set[str] = set()
    table = items_table(version)
    for part in chunked(sorted(set(names))):
        marks = ",".join("?" * len(part))
        indexed.update(row[0] for row in db.execute(
            f"SELECT path FROM ({table}) WHERE path IN ({marks}) AND status = 'indexed' AND kind != 'video'", part
        ).fetchall())
        skipped.update(row[0] for row in db.execute(
            f"SELECT key FROM ({table}) WHERE key IN ({marks}) AND status = 'skipped'", part
        ).fetchall())
    return indexed, skipped


def file_count(db: sqlite3.Connection, version: int) -> int:
    """How many files the indexed images and frames come from (each video once)."""
    table = items_table(version)
    query = f"SELECT COUNT(DISTINCT path) FROM ({table}) WHERE status = 'indexed' AND kind != 'video'"
    return int(db.execute(query).fetchone()[0])
