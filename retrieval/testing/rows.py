"""Every row of an index snapshot at once, for tests that compare whole indexes (``IndexSnapshot`` itself
looks rows up by id, for the few a query needs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..index.rows import FrameRef
from ..index.snapshot import IndexSnapshot

EVERY = 2**62  # a listing limit above any index's number of items


@dataclass(frozen=True)
class AllRows:
    """A snapshot's rows: ``object_ids`` ``(M,)`` int64 sorted, ``object_image`` ``(M,)`` int64 item id of each,
    ``boxes`` ``(M, 4)`` float32, ``labels`` (``M``), ``scores`` ``(M,)`` float32 (NaN = none); by item id, the
    path and key of every indexed image and frame (in key order) and the ``FrameRef`` of every frame; and
    ``(key, reason)`` of every skipped item."""

    object_ids: np.ndarray
    object_image: np.ndarray
    boxes: np.ndarray
    labels: list
    scores: np.ndarray
    image_paths: dict[int, str]
    item_keys: dict[int, str]
    frames: dict[int, FrameRef]
    skipped: list[tuple[str, str]]


def all_rows(snapshot: IndexSnapshot) -> AllRows:
    """Every row of ``snapshot``: its objects (those of its vectors) and the items it lists."""
    found = snapshot.objects(snapshot.vectors.ids())
    items = sorted(snapshot.listing(0, EVERY), key=lambda item: item.key)
    return AllRows(
        object_ids=found.ids,
        object_image=found.item,
        boxes=found.boxes,
        labels=found.labels,
        scores=found.scores,
        image_paths={item.id: item.path for item in items},
        item_keys={item.id: item.key for item in items},
        frames={item.id: item.frame for item in items if item.frame is not None},
        skipped=snapshot.problems()[0],
    )
