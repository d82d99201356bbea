"""``retrieval evaluate``: retrieval precision of an index against ground truth.

Ground truth is JSON::

    {"queries": [{"image": "query/a.jpg", "box": [x1, y1, x2, y2],
                  "positives": ["gallery/b.jpg", ...], "junk": ["gallery/c.jpg"]}]}

Paths are relative to the ground-truth file's folder, or absolute. ``box`` may
be omitted or null for the whole image. A query image may be a video file with
``"time": seconds`` picking its frame. A positive or junk entry may be a video:
its path (the video at any time) or ``{"video": path, "start": s, "end": s}``
(the video while its best frame lies in that span). Each query ranks every
indexed gallery item (a still image, or a video) by its best object
(``--group image``); a video result counts as positive (or junk) when its path
is named and its ``time``, the time of its best frame, lies within
``[start, end]`` of one of the spans named for it (bounds included); the
span of frames merged into the result does not count, only the frame it
shows. Several spans of one video are one positive, found by any of them.
Junk results are removed from the ranking; then P@1, P@5, P@10, P@k,
recall@k and AP are computed over the full ranking (formulas in
``metrics.py`` and the README).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GroundTruthError, RetrievalError
from ..index.snapshot import IndexSnapshot
from ..validation import check_int
from ..videos import VIDEO_EXTENSIONS, is_video_name
from .rerank import Rerank
from .metrics import average_precision, chance_average_precision, precision_at_k, recall_at_k
from .queries import QUERY_BATCH, Query
from .searcher import Searcher

SPAN = '{"video": path, "start": seconds, "end": seconds}'


@dataclass(frozen=True)
class Targets:
    """The positives (or junk) of one query: ``paths``, normalised absolute paths matched whatever the time (still
    images, whole videos), and ``spans``, ``(video path, start, end)`` matched by a result at a time within."""

    paths: frozenset[str]
    spans: tuple[tuple[str, float, float], ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """Every file named: each one positive however many spans name it."""
        return self.paths | {video for video, _, _ in self.spans}

    def matches(self, path: str, time: float | None) -> bool:
        """Whether a result from file ``path`` (normalised absolute) at ``time`` seconds (``None``: a still) is one."""
        if path in self.paths:
            return True
        return time is not None and any(v == path and start <= time <= end for v, start, end in self.spans)


@dataclass(frozen=True)
class GroundTruthQuery:
    image: Path
    box: tuple[float, float, float, float] | None
    positives: Targets
    junk: Targets
    time: float | None = None  # seconds: the frame of a video query


def load_ground_truth(path: str | os.PathLike) -> list[GroundTruthQuery]:
    """Read and check a ground-truth file; errors name the query entry at fault."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("queries"), list) or not data["queries"]:
        raise GroundTruthError(f"ground truth {path} needs a non-empty 'queries' list")
    base = path.absolute().parent
    return [_query(f"{path}: queries[{i}]", entry, base) for i, entry in enumerate(data["queries"])]


def _query(where: str, entry: object, base: Path) -> GroundTruthQuery:
    """One checked query entry (``where`` names it in errors)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        raise GroundTruthError(f"{where} needs an 'image' path")
    box = entry.get("box")
    if box is not None and (not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box)):
        raise GroundTruthError(f"{where} box {box!r} must be [x1, y1, x2, y2] numbers or null")
    time = entry.get("time")
    if time is not None and not (_is_number(time) and 0 <= time < float("inf")):
        raise GroundTruthError(f"{where} time {json.dumps(time)} must be a number of seconds, 0 or more")
    if is_video_name(entry["image"]) and time is None:
        raise GroundTruthError(f'{where}: {entry["image"]} is a video: give "time" (seconds) to pick the frame')
    positives, junk = (_targets(f"{where} '{key}'", entry.get(key, []), base) for key in ("positives", "junk"))
    if not positives.names:
        raise GroundTruthError(f"{where} has no positives")
    return GroundTruthQuery(
        image=Path(_normalise(base, entry["image"])),
        box=tuple(float(v) for v in box) if box is not None else None,
        positives=positives,
        junk=junk,
        time=None if time is None else float(time),
    )


def _targets(where: str, values: object, base: Path) -> Targets:
    """The ``Targets`` of a ``positives`` or ``junk`` list: paths, and ``{"video", "start", "end"}`` spans."""
    if not isinstance(values, list):
        raise GroundTruthError(f"{where} must be a list of image paths, video paths and {SPAN} spans")
    paths, spans = set(), []
    for j, value in enumerate(values):
        if isinstance(value, str):
            paths.add(_normalise(base, value))
            continue
        if (
            not isinstance(value, dict)
            or set(value) != {"video", "start", "end"}
            or not isinstance(value["video"], str)
        ):
            raise GroundTruthError(f"{where}[{j}] {json.dumps(value)} must be a path or a span {SPAN}")
        start, end = value["start"], value["end"]
        if not (_is_number(start) and _is_number(end) and 0 <= start <= end < float("inf")):
            raise GroundTruthError(
                f"{where}[{j}] span start {json.dumps(start)}, end {json.dumps(end)}: "
                "give seconds with 0 <= start <= end"
            )
        if not is_video_name(value["video"]):
            raise GroundTruthError(
                f"{where}[{j}] {value['video']} is no video file ({', '.join(sorted(VIDEO_EXTENSIONS))}): "
                "name a still image by its path alone"
            )
        spans.append((_normalise(base, value["video"]), float(start), float(end)))
    return Targets(frozenset(paths), tuple(spans))


def evaluate(
    index_dir: str | os.PathLike,
    ground_truth: str | os.PathLike,
    top_k: int = 10,
    *,
    device: str = "auto",
    precision: str = "auto",
    searcher: Searcher | None = None,
    rerank: Rerank | None = None,
    batch_size: int = QUERY_BATCH,
) -> dict:
    """Score every ground-truth query; return ``{"mAP", "P@1", "P@5", "P@10", "recall@k", "chance_mAP", "rerank",
    "queries"}``.

    ``queries`` holds the same metrics per query, with its image, box and number of positives; ``rerank``
    what re-ranked the queries (``Rerank.to_dict``; default none). ``top_k`` (at least 1) and the ground truth
    are checked before the index and its models are loaded, and every query's positives before any query is
    embedded. The queries are embedded and searched ``batch_size`` at a time (``Searcher.iter_query_many``);
    the first that fails (an unreadable image, a box outside it) stops it with a ``GroundTruthError`` naming
    the query.
    """
    top_k = check_int("--top-k", top_k, low=1)
    queries = load_ground_truth(ground_truth)
    searcher = searcher or Searcher(index_dir, device=device, precision=precision)
    snapshot = searcher.snapshot
    names = {name for query in queries for name in query.positives.names | query.junk.paths}
    gallery, skipped = _named(snapshot, names)
    _check_positives_indexed(ground_truth, queries, gallery | skipped, snapshot)
    files, ks = snapshot.file_count(), sorted({1, 5, 10, top_k})
    asked = [Query(query.image, query.box, query.time) for query in queries]
    answers = searcher.iter_query_many(asked, max(1, files), "image", batch_size, rerank)
    per_query = []
    for i, (query, results) in enumerate(zip(queries, answers)):
        if isinstance(results, RetrievalError):
            raise GroundTruthError(f"{ground_truth}: queries[{i}]: {results}") from None
        per_query.append(_scored(query, results, ks, top_k, files - len(gallery & query.junk.paths)))
    names = [f"P@{k}" for k in ks] + [f"recall@{top_k}"]
    report = {"mAP": _mean(per_query, "AP"), **{name: _mean(per_query, name) for name in names}}
    report["chance_mAP"] = _mean(per_query, "chance_AP")
    report["rerank"] = (rerank or Rerank()).to_dict()
    report["queries"] = per_query
    return report


def _scored(query: GroundTruthQuery, results: list, ks: list[int], top_k: int, rankable: int) -> dict:
    """One query's report row: its image, box, time, number of positives, ``P@k`` for each of ``ks``,
    ``recall@top_k``, AP, and the AP of a random ranking of the ``rankable`` files (all but its junk).
    ``results`` is its full ranking (``SearchResult``, best first)."""
    ranked = [(os.path.normpath(r.image), r.time) for r in results]
    relevant = [query.positives.matches(*hit) for hit in ranked if not query.junk.matches(*hit)]
    n_relevant = len(query.positives.names)
    metrics = {f"P@{k}": precision_at_k(relevant, k) for k in ks}
    metrics[f"recall@{top_k}"] = recall_at_k(relevant, n_relevant, top_k)
    metrics["AP"] = average_precision(relevant, n_relevant)
    metrics["chance_AP"] = chance_average_precision(n_relevant, rankable)
    box = list(query.box) if query.box else None
    return {"image": str(query.image), "box": box, "time": query.time, "positives": n_relevant, **metrics}


def _check_positives_indexed(
    ground_truth: str | os.PathLike, queries: list[GroundTruthQuery], known: set[str], snapshot: IndexSnapshot
) -> None:
    """``GroundTruthError`` naming the first query with a positive that is neither a gallery item of
    ``snapshot`` nor a file it skipped (``known``: normalised absolute paths), before any query is embedded."""
    for i, query in enumerate(queries):
        unknown = sorted(query.positives.names - known)
        if unknown:
            raise GroundTruthError(
                f"{ground_truth}: queries[{i}] positive {unknown[0]} is not a gallery image or video of this index "
                f"(gallery root {snapshot.gallery_root})"
            )


def _read_json(path: Path):
    """The JSON value in ``path``; ``GroundTruthError`` when it is not a regular file (a folder, a pipe),
    cannot be read, or is not UTF-8 JSON."""
    if not path.is_file():
        raise GroundTruthError(f"ground truth {path} is not a file: give the ground-truth JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GroundTruthError(f"ground truth {path} cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise GroundTruthError(f"ground truth {path} is not UTF-8 text: give the ground-truth JSON file") from None
    except json.JSONDecodeError as error:
        raise GroundTruthError(f"ground truth {path} is not valid JSON: {error.msg} at line {error.lineno}") from None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _named(snapshot: IndexSnapshot, names: set[str]) -> tuple[set[str], set[str]]:
    """``(gallery, skipped)``: those of ``names`` (normalised absolute paths) that are a gallery image or video
    of ``snapshot``, and those that are a file it skipped."""
    root = _normalise(snapshot.gallery_root, ".")
    relative = {os.path.relpath(name, root).replace(os.sep, "/"): name for name in names}
    indexed, skipped = snapshot.named_paths(path for path in relative if not path.startswith(".."))
    return {relative[path] for path in indexed}, {relative[path] for path in skipped}


def _normalise(base: Path, path: str) -> str:
    return os.path.normpath(os.path.join(base, path))


def _mean(rows: list[dict], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)
