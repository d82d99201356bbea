"""The objects found in one image: boxes, labels, detection scores and vectors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class ImageObjects:
    """Objects of one image.

    Attributes:
        boxes: ``(N, 4)`` float32, ``x1, y1, x2, y2`` in original image pixels.
        labels: ``N`` class names, ``None`` where the source has none (whole images).
        scores: ``(N,)`` float32 detection scores, NaN where the box was not detected.
        vectors: ``(N, D)`` float32 L2-normalised embeddings, or ``None`` before embedding.
    """

    boxes: np.ndarray
    labels: list[str | None]
    scores: np.ndarray
    vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def with_vectors(self, vectors: np.ndarray) -> "ImageObjects":
        """A copy carrying ``vectors`` (``(N, D)``, one row per box)."""
        if vectors.shape[0] != len(self):
            raise ValueError(f"{vectors.shape[0]} vectors for {len(self)} boxes")
        return replace(self, vectors=vectors)

    @classmethod
    def given(cls, boxes: np.ndarray, labels: list[str | None]) -> "ImageObjects":
        """Boxes that were not detected (annotations, whole images): scores are NaN."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return cls(boxes=boxes, labels=list(labels), scores=np.full(len(boxes), np.nan, dtype=np.float32))
