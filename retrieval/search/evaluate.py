"""``retrieval evaluate``: retrieval precision of an index against ground truth.

Ground truth is JSON::

    {"queries": [{"image": "query/a.jpg", "box": [x1, y1, x2, y2],
                  "positives": ["gallery/b.jpg", ...], "junk": ["gallery/c.jpg"]}]}

Paths are relative to the ground-truth file's folder, or absolute. ``box`` may
be omitted or null for the whole image. Each query ranks every indexed gallery
image by its best object (``--group image``); junk images are removed from
the ranking; then P@1, P@5, P@10, P@k, recall@k and AP are computed over the
full ranking (formulas in ``metrics.py`` and the README).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GroundTruthError, RetrievalError
from ..validation import check_int
from .rerank import Rerank
from .metrics import average_precision, chance_average_precision, precision_at_k, recall_at_k
from .searcher import Searcher


@dataclass(frozen=True)
class GroundTruthQuery:
    image: Path
    box: tuple[float, float, float, float] | None
    positives: frozenset[str]  # normalised absolute paths
    junk: frozenset[str]


def load_ground_truth(path: str | os.PathLike) -> list[GroundTruthQuery]:
    """Read and check a ground-truth file; errors name the query entry at fault."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("queries"), list) or not data["queries"]:
        raise GroundTruthError(f"ground truth {path} needs a non-empty 'queries' list")
    base = path.absolute().parent
    queries = []
    for i, entry in enumerate(data["queries"]):
        where = f"{path}: queries[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise GroundTruthError(f"{where} needs an 'image' path")
        box = entry.get("box")
        if box is not None and (
            not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)
        ):
            raise GroundTruthError(f"{where} box {box!r} must be [x1, y1, x2, y2] numbers or null")
        lists = {}
        for key in ("positives", "junk"):
            values = entry.get(key, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise GroundTruthError(f"{where} '{key}' must be a list of image paths")
            lists[key] = frozenset(_normalise(base, v) for v in values)
        if not lists["positives"]:
            raise GroundTruthError(f"{where} has no positives")
        queries.append(
            GroundTruthQuery(
                image=Path(_normalise(base, entry["image"])),
                box=tuple(float(v) for v in box) if box is not None else None,
                positives=lists["positives"],
                junk=lists["junk"],
            )
        )
    return queries


def evaluate(
    index_dir: str | os.PathLike,
    ground_truth: str | os.PathLike,
    top_k: int = 10,
    *,
    device: str = "auto",
    precision: str = "auto",
    searcher: Searcher | None = None,
    rerank: Rerank | None = None,
) -> dict:
    """Score every ground-truth query; return ``{"mAP", "P@1", "P@5", "P@10", "recall@k", "chance_mAP", "rerank",
    "queries"}``.

    ``queries`` holds the same metrics per query, with its image, box and number of positives; ``rerank``
    what re-ranked the queries (``Rerank.to_dict``; default none). ``top_k`` (at least 1) and the ground truth
    are checked before the index and its models are loaded.
    """
    top_k = check_int("--top-k", top_k, low=1)
    queries = load_ground_truth(ground_truth)
    searcher = searcher or Searcher(index_dir, device=device, precision=precision)
    snapshot = searcher.snapshot
    gallery = {_normalise(snapshot.gallery_root, p) for p in snapshot.image_paths.values()}
    known = gallery | {_normalise(snapshot.gallery_root, p) for p, _ in snapshot.skipped}
    ks = sorted({1, 5, 10, top_k})
    per_query = []
    for i, query in enumerate(queries):
        unknown = sorted(query.positives - known)
        if unknown:
            raise GroundTruthError(
                f"{ground_truth}: queries[{i}] positive {unknown[0]} is not a gallery image of this index "
                f"(gallery root {snapshot.gallery_root})"
            )
        try:
            results = searcher.query(
                query.image, query.box, top_k=max(1, len(snapshot.image_paths)), group="image", rerank=rerank
            )
        except RetrievalError as error:
            raise GroundTruthError(f"{ground_truth}: queries[{i}]: {error}") from None
        ranked = [os.path.normpath(r.image) for r in results]
        relevant = [path in query.positives for path in ranked if path not in query.junk]
        n_relevant = len(query.positives)
        metrics = {f"P@{k}": precision_at_k(relevant, k) for k in ks}
        metrics[f"recall@{top_k}"] = recall_at_k(relevant, n_relevant, top_k)
        metrics["AP"] = average_precision(relevant, n_relevant)
        metrics["chance_AP"] = chance_average_precision(n_relevant, len(gallery - query.junk))
        per_query.append(
            {
                "image": str(query.image),
                "box": list(query.box) if query.box else None,
                "positives": n_relevant,
                **metrics,
            }
        )
    names = [f"P@{k}" for k in ks] + [f"recall@{top_k}"]
    report = {"mAP": _mean(per_query, "AP"), **{name: _mean(per_query, name) for name in names}}
    report["chance_mAP"] = _mean(per_query, "chance_AP")
    report["rerank"] = (rerank or Rerank()).to_dict()
    report["queries"] = per_query
    return report


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


def _normalise(base: Path, path: str) -> str:
    return os.path.normpath(os.path.join(base, path))


def _mean(rows: list[dict], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)
