"""Search: a query image and box → the most similar gallery objects or images.

``Searcher`` loads an index snapshot and the models its manifest names once,
then answers any number of queries. Score = cosine similarity = inner product
of unit vectors.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .boxes import validate_box, whole_image_box
from .errors import SettingsError, StoreError
from .images import LoadedImage, load_image
from .models import Embedder, build_embedder, resolve_device
from .snapshot import IndexSnapshot

GROUPS = ("image", "object")


@dataclass(frozen=True)
class SearchResult:
    """One ranked gallery object (or image, represented by its best object).

    Attributes:
        rank: 1 for the best.
        score: cosine similarity with the query, in [-1, 1].
        image: absolute path of the gallery image.
        box: ``[x1, y1, x2, y2]`` in that image's original pixels.
        label: class name, or ``None``.
        detection_score: the detector's score, or ``None`` for given boxes.
        object_id: the object's id (its FAISS id).
    """

    rank: int
    score: float
    image: str
    box: list[float]
    label: str | None
    detection_score: float | None
    object_id: int

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "score": self.score,
            "image": self.image,
            "box": self.box,
            "label": self.label,
            "detection_score": self.detection_score,
            "object_id": self.object_id,
        }


class Searcher:
    """Answers queries against one index with the models that built it."""

    def __init__(
        self,
        index_dir: str | os.PathLike,
        device: str = "auto",
        embedder: Embedder | None = None,
        precision: str = "auto",
    ) -> None:
        """Load ``index_dir`` and the models its manifest names, on ``device`` in ``precision``.

        The precision need not be the one the index was built with: bf16 and fp32 vectors of a box agree
        to a cosine above 0.99. ``embedder`` lets a caller share loaded models (it must be the index's).
        """
        self.snapshot = IndexSnapshot.load(index_dir)
        manifest = self.snapshot.manifest
        if embedder is None:
            settings = dataclasses.replace(manifest.settings, precision=precision)
            embedder = build_embedder(settings, resolve_device(device))
        expected = manifest.embedder["weights"]
        if embedder.identity != expected or embedder.dimension != manifest.dimension:
            raise StoreError(
                f"index {index_dir} was built with {manifest.embedder['name']} weights {_describe(expected)}, "
                f"but the model loaded now has {_describe(embedder.identity)}: "
                "restore those weights or rebuild the index"
            )
        self.embedder = embedder

    def embed_query(self, image: LoadedImage | str | os.PathLike, box: Sequence[float] | None = None) -> np.ndarray:
        """The ``(D,)`` unit vector of ``box`` (original pixels; ``None`` = the whole image) in ``image``."""
        if not isinstance(image, LoadedImage):
            image = load_image(image)
        if box is None:
            boxes = whole_image_box(image.width, image.height)
        else:
            boxes = np.array([validate_box(box, image.width, image.height)], dtype=np.float32)
        return self.embedder.embed([image.rgb], [boxes])[0][0]

    def query(
        self,
        image: LoadedImage | str | os.PathLike,
        box: Sequence[float] | None = None,
        top_k: int = 10,
        group: str = "image",
    ) -> list[SearchResult]:
        """The ``top_k`` best gallery images (``group="image"``, each by its best object) or objects."""
        return self.search(self.embed_query(image, box), top_k, group)

    def search(self, vector: np.ndarray, top_k: int = 10, group: str = "image") -> list[SearchResult]:
        """Rank by inner product with ``vector`` (``(D,)`` float32); see ``query``."""
        if group not in GROUPS:
            raise SettingsError(f"unknown grouping {group!r}: use one of {', '.join(GROUPS)}")
        if top_k < 1:
            raise SettingsError(f"--top-k {top_k} must be at least 1")
        total = self.snapshot.index.ntotal
        if total == 0:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        k = min(total, top_k if group == "object" else top_k * 8)
        while True:
            scores, ids = self.snapshot.index.search(query, k)
            keep = ids[0] >= 0
            scores, ids = scores[0][keep], ids[0][keep]
            if group == "image":
                scores, ids = best_per_image(scores, ids, self.snapshot.object_image[self.snapshot.rows_of(ids)])
            if len(ids) >= top_k or k == total:
                break
            k = min(total, k * 4)
        return [
            self._result(rank, score, object_id)
            for rank, (score, object_id) in enumerate(zip(scores[:top_k], ids[:top_k]), start=1)
        ]

    def _result(self, rank: int, score: float, object_id: int) -> SearchResult:
        snap = self.snapshot
        row = int(snap.rows_of(np.array([object_id]))[0])
        detection_score = float(snap.scores[row])
        return SearchResult(
            rank=rank,
            score=float(score),
            image=str(snap.absolute_path(snap.object_image[row])),
            box=[float(v) for v in snap.boxes[row]],
            label=snap.labels[row],
            detection_score=None if np.isnan(detection_score) else detection_score,
            object_id=int(object_id),
        )


def best_per_image(scores: np.ndarray, ids: np.ndarray, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep each image's first (best) object of a ranking sorted by descending score.

    Args:
        scores, ids, image_ids: ``(K,)`` arrays, one entry per ranked object.
    Returns:
        ``(scores, ids)`` of the kept objects, still in ranking order.
    """
    _, first = np.unique(image_ids, return_index=True)
    first.sort()
    return scores[first], ids[first]


def _describe(identity: dict) -> str:
    if identity.get("source") == "file":
        return f"file {identity['path']} (sha256 {identity['sha256'][:12]})"
    if identity.get("source") == "default":
        return f"torchvision {identity['name']} (sha256 {identity.get('sha256', '?')[:12]})"
    return f"random seed {identity.get('seed')} (state {identity.get('state_sha256', '?')[:12]})"
