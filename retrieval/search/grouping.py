"""Grouping ranked candidates into hits: one per gallery item (a still image, or a video by its best frame), or
one per object with consecutive matching frames of a video merged, the way shot-based video search does.

Every function takes flat ``(N,)`` arrays with one entry per candidate object of one or more queries, in
candidate order (query after query, each query's candidates by descending score, as a store search returns
them): ``query`` (int64 row of the query), ``score`` (float32), ``item`` (int64 item id of the object's
image or frame), ``video`` (int64 video id of the object's frame, -1 for an object of a still image) and
``position`` (int64 position of the frame among its video's indexed frames; consecutive sampled frames
differ by 1).

A *run* is a maximal set of one query's candidates in one video, all on the same side of the midpoint of
that video's candidate scores (``above_midpoint``), whose frame positions leave no gap (several objects of
one frame are in the same run); each candidate of a still image is a run of its own. A hit's *span* is its
run: the candidates of its lowest and its highest frame position. The midpoint parts the frames that show
the object from neighbours that merely resemble it, whatever else the gallery holds; a video whose
candidate frames all show the object is parted too, so its weaker frames become runs of their own.
"""

from __future__ import annotations

import numpy as np


def pair_ids(query: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 ids 0, 1, ..., equal exactly where two candidates have equal ``(query, key)``
    (``key``: ``(N,)`` int64)."""
    order = np.lexsort((key, query))
    q, k = query[order], key[order]
    new = np.ones(len(order), bool)
    new[1:] = (q[1:] != q[:-1]) | (k[1:] != k[:-1])
    ids = np.empty(len(order), np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids


def above_midpoint(query: np.ndarray, video: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: whether each candidate scores at least halfway between the best and the lowest score of
    its query's candidates in its video (the still images of a query count as one video; their side does
    not matter, each is a run of its own)."""
    if not len(query):
        return np.zeros(0, bool)
    group = pair_ids(query, video)
    best, low = np.full(group.max() + 1, -np.inf), np.full(group.max() + 1, np.inf)
    np.maximum.at(best, group, score)
    np.minimum.at(low, group, score)
    return score >= (best[group] + low[group]) / 2


def frame_runs(query: np.ndarray, video: np.ndarray, position: np.ndarray, matching: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 run id of each candidate (0, 1, ...; see the module docstring); ``matching`` is ``(N,)``
    bool, the side of the midpoint each candidate is on."""
    order = np.lexsort((position, matching, video, query))
    q, v, m, p = query[order], video[order], matching[order], position[order]
    new = np.ones(len(order), bool)
    new[1:] = (q[1:] != q[:-1]) | (v[1:] != v[:-1]) | (m[1:] != m[:-1]) | (p[1:] - p[:-1] > 1) | (v[1:] == -1)
    runs = np.empty(len(order), np.int64)
    runs[order] = np.cumsum(new) - 1
    return runs


def first_of_each(query: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``(H,)`` int64 indices of the first candidate of each distinct ``(query, key)`` pair (``key``: ``(N,)``
    int64), in candidate order: with candidates by descending score, each group's best."""
    _, first = np.unique(pair_ids(query, key), return_index=True)
    return np.sort(first)


def run_ends(runs: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)``, each ``(R,)`` int64 indexed by run id: the candidate of the lowest and of the highest
    frame position in each run (``runs``: ``(N,)`` ids 0..R-1 from ``frame_runs``)."""
    order = np.lexsort((position, runs))
    r = runs[order]
    last = np.ones(len(order), bool)
    last[:-1] = r[1:] != r[:-1]
    first = np.roll(last, 1)
    return order[first], order[last]


def group_hits(
    query: np.ndarray, score: np.ndarray, item: np.ndarray, video: np.ndarray, position: np.ndarray, group: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hits among the candidates, in candidate order: ``(hits, start, end)``, each ``(H,)`` int64 indices
    into the candidates: each hit's representing candidate and the first and last candidates of its span.

    ``group="image"``: one hit per query and item, a video counting as one item (its best frame represents
    it; its span is that frame's run). ``group="object"``: one hit per run (its best candidate).
    """
    runs = frame_runs(query, video, position, above_midpoint(query, video, score))
    key = runs if group == "object" else np.where(video == -1, item, video)
    hits = first_of_each(query, key)
    start, end = run_ends(runs, position)
    return hits, start[runs[hits]], end[runs[hits]]
