"""Batch query files (``retrieval query --batch FILE``): many queries in one file, one answer record each.

Two formats, by extension (UTF-8; a byte-order mark is allowed; blank lines are skipped):

- ``.jsonl`` / ``.json``: one JSON object per line,
  ``{"image": "photo.jpg", "box": [x1, y1, x2, y2], "time": 12.5, "id": "anything"}``; only ``image`` is
  required (no ``box`` or ``null`` = the whole image; ``time``, in seconds, picks the frame when ``image``
  is a video file, is required there and refused on a still image; ``id`` is any JSON value, echoed back).
- ``.csv``: a header naming the columns ``image,x1,y1,x2,y2[,time][,id]`` (in any order; the four box
  columns may be left out together), then one row per query; empty box cells = the whole image.

Boxes are in the image's original pixels (after EXIF orientation). A relative image path is relative to the
batch file's folder. A line that is no query becomes that query's error; a file that cannot be read as a
whole (missing, unknown extension, no header, no queries) raises ``QueryFileError``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import QueryFileError, RetrievalError
from .queries import QUERY_BATCH, Query
from .rerank import Rerank
from .searcher import Searcher

JSON_LINES = (".jsonl", ".json")
CSV_COLUMNS = ("image", "x1", "y1", "x2", "y2", "time", "id")
BOX_COLUMNS = CSV_COLUMNS[1:5]
CSV_HEADER = "image,x1,y1,x2,y2[,time][,id]"


@dataclass(frozen=True)
class BatchLine:
    """One query line of a batch file.

    Attributes:
        number: its 1-based line in the file (a CSV row that spans lines: its first).
        query: the query it asks (its image an absolute path), or the ``QueryFileError``
            that says why it is none.
        id: its ``id``, echoed back (``None`` when absent).
    """

    number: int
    query: Query | QueryFileError
    id: object = None


def read_batch_file(path: str | os.PathLike) -> list[BatchLine]:
    """The query lines of batch file ``path`` in file order; ``QueryFileError`` when the file as a whole
    cannot be read (missing, not UTF-8, an unknown extension, a CSV without header, no queries)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (*JSON_LINES, ".csv"):
        raise QueryFileError(
            f"{path}: unknown batch file type {suffix or '(no extension)'!r}: use .jsonl (or .json) for JSON lines "
            f"or .csv with the header {CSV_HEADER}"
        )
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise QueryFileError(f"{path}: not a regular file (a folder, pipe, device or socket)")
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise QueryFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise QueryFileError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    folder = os.path.dirname(os.fspath(path))
    lines = _csv_lines(path, text, folder) if suffix == ".csv" else _json_lines(path, text, folder)
    if not lines:
        raise QueryFileError(f"{path}: holds no queries")
    return lines


def answer_records(
    searcher: Searcher,
    lines: list[BatchLine],
    top_k: int = 10,
    group: str = "image",
    batch_size: int = QUERY_BATCH,
    rerank: Rerank | None = None,
) -> Iterator[dict]:
    """One JSON-ready record per line, in order, yielded as each batch is answered:
    ``{"query": line number, "id", "image", "box", "time", "results": [SearchResult.to_dict(), ...]}``, or
    ``{"query", "id", "error": one line}`` for a line that is no query or whose query failed."""
    queries = [line.query for line in lines if isinstance(line.query, Query)]
    answers = searcher.iter_query_many(queries, top_k, group, batch_size, rerank)
    for line in lines:
        answer = next(answers) if isinstance(line.query, Query) else line.query
        if isinstance(answer, RetrievalError):
            yield {"query": line.number, "id": line.id, "error": str(answer)}
        else:
            box = None if line.query.box is None else list(line.query.box)
            results = [result.to_dict() for result in answer]
            query = line.query
            yield {
                "query": line.number,
                "id": line.id,
                "image": query.image,
                "box": box,
                "time": query.time,
                "results": results,
            }


def _json_lines(path: str | os.PathLike, text: str, folder: str) -> list[BatchLine]:
    if text.lstrip().startswith("["):
        raise QueryFileError(f"{path}: a JSON array; write one JSON object per line (JSON lines) instead")
    return [
        _line(path, number, lambda line=line: _json_object(line), lambda fields: _json_query(fields, folder))
        for number, line in enumerate(text.split("\n"), start=1)  # not splitlines: U+2028 may be in a string
        if line.strip()
    ]


def _json_object(line: str) -> dict:
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as error:
        raise QueryFileError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(fields, dict):
        raise QueryFileError('must be a JSON object such as {"image": "photo.jpg", "box": [10, 20, 200, 240]}')
    return fields


def _json_query(fields: dict, folder: str) -> Query:
    unknown = sorted(set(fields) - {"image", "box", "time", "id"})
    if unknown:
        raise QueryFileError(f"unknown key {unknown[0]!r}: use image, box, time and id")
    box = fields.get("box")
    if box is not None and not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise QueryFileError(
            f"box {json.dumps(box)} must be four numbers [x1, y1, x2, y2], or null for the whole image"
        )
    return _query(fields.get("image"), box, fields.get("time"), folder)


def _csv_lines(path: str | os.PathLike, text: str, folder: str) -> list[BatchLine]:
    rows = _csv_rows(path, text)
    if not rows:
        raise QueryFileError(f"{path}: no header; the first line must name the columns {CSV_HEADER}")
    columns = _csv_header(path, rows[0][1])
    return [
        _line(path, number, lambda cells=cells: _csv_row(columns, cells), lambda row: _csv_query(row, folder))
        for number, cells in rows[1:]
    ]


def _csv_rows(path: str | os.PathLike, text: str) -> list[tuple[int, list[str]]]:
    """``(first line number, cells)`` of each row that is not blank."""
    reader = csv.reader(io.StringIO(text))
    rows, previous = [], 0
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((previous + 1, [cell.strip() for cell in row]))
            previous = reader.line_num
    except csv.Error as error:
        raise QueryFileError(f"{path}: not a CSV file (line {reader.line_num}: {error})") from None
    return rows


def _csv_header(path: str | os.PathLike, cells: list[str]) -> list[str]:
    """The column names of a CSV header, checked: ``image``, the four box columns or none, ``time``, ``id``."""
    columns = [cell.lower() for cell in cells]
    if "image" not in columns:
        raise QueryFileError(
            f"{path}: no header; the first line must name the columns {CSV_HEADER} (it reads {','.join(cells)!r})"
        )
    unknown = [column for column in columns if column not in CSV_COLUMNS]
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if unknown:
        problem = f"unknown column {unknown[0]!r}"
    elif repeated:
        problem = f"column {repeated[0]!r} named twice"
    elif len(set(BOX_COLUMNS) & set(columns)) not in (0, 4):
        problem = "the box needs all of x1, y1, x2, y2 (or none of them)"
    else:
        return columns
    raise QueryFileError(f"{path}: header {','.join(cells)!r}: {problem}; the columns are {CSV_HEADER}")


def _csv_row(columns: list[str], cells: list[str]) -> dict:
    """A CSV row's cells by column name, ``id`` ``None`` when empty."""
    if len(cells) != len(columns):
        raise QueryFileError(f"has {len(cells)} values, but the header names {len(columns)} columns")
    row = dict(zip(columns, cells))
    return {**row, "id": row.get("id") or None}


def _csv_query(row: dict, folder: str) -> Query:
    box = [row.get(column, "") for column in BOX_COLUMNS]
    try:
        numbers = [float(value) for value in box] if any(box) else None
    except ValueError:
        raise QueryFileError(
            f"box {','.join(box)!r} must be four numbers x1,y1,x2,y2, or four empty cells for the whole image"
        ) from None
    try:
        time = float(row["time"]) if row.get("time") else None
    except ValueError:
        raise QueryFileError(f"time {row['time']!r} must be a number of seconds") from None
    return _query(row["image"], numbers, time, folder)


def _line(path: str | os.PathLike, number: int, fields_of, query_of) -> BatchLine:
    """The ``BatchLine`` of line ``number``: ``fields_of()`` reads its fields (a dict with the ``id``),
    ``query_of(fields)`` the query they ask; a ``QueryFileError`` of either becomes the line's error."""
    fields: dict = {}
    try:
        fields = fields_of()
        return BatchLine(number, query_of(fields), fields.get("id"))
    except QueryFileError as error:
        return BatchLine(number, QueryFileError(f"{path} line {number}: {error}"), fields.get("id"))


def _query(image: object, box: list | None, time: object, folder: str) -> Query:
    """The ``Query`` of checked fields, its image path absolute (a relative one joined to the file's ``folder``)."""
    if not isinstance(image, str) or not image.strip():
        raise QueryFileError(f'"image" must be the path of an image or video file (got {json.dumps(image)})')
    if time is not None and not (_is_number(time) and math.isfinite(time) and time >= 0):
        raise QueryFileError(f"time {json.dumps(time)} must be a number of seconds, 0 or more")
    path = os.path.abspath(os.path.join(folder, image))
    return Query(path, None if box is None else tuple(float(v) for v in box), time)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
