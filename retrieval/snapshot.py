"""A consistent, read-only view of an index directory, loaded into memory.

Everything a query needs (the FAISS index, every object's box, label, score and
image) is read inside one SQLite read transaction, at one generation, so a
snapshot never mixes two states of an index that is being written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .errors import StoreError
from .manifest import Manifest
from .store import connect, vectors_path


@dataclass(frozen=True)
class IndexSnapshot:
    """An index as of one commit.

    Attributes:
        directory: the index folder.
        manifest: its manifest.
        index: the FAISS index (ids are object ids).
        object_ids: ``(M,)`` int64, sorted.
        object_image: ``(M,)`` int64 image row id of each object.
        boxes: ``(M, 4)`` float32, original pixels.
        labels: ``M`` labels (``None`` where there is none).
        scores: ``(M,)`` float32 detection scores (NaN where not detected).
        image_paths: image row id → path relative to the gallery root (indexed images only).
        skipped: ``(path, reason)`` for every skipped file.
    """

    directory: Path
    manifest: Manifest
    index: faiss.Index
    object_ids: np.ndarray
    object_image: np.ndarray
    boxes: np.ndarray
    labels: list
    scores: np.ndarray
    image_paths: dict[int, str]
    skipped: list[tuple[str, str]]

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "IndexSnapshot":
        """Load the last committed state of ``directory`` and check that vectors and metadata agree."""
        directory = Path(directory)
        if not directory.is_dir():
            raise StoreError(
                f"index folder {directory} does not exist; build it with 'retrieval index GALLERY --index {directory}'"
            )
        manifest = Manifest.load(directory)
        db = connect(directory, read_only=True)
        try:
            db.execute("BEGIN")
            generation = db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0]
            rows = db.execute("SELECT id, image_id, x1, y1, x2, y2, label, score FROM objects ORDER BY id").fetchall()
            images = db.execute("SELECT id, path, status, error FROM images ORDER BY path").fetchall()
            index = _read_vectors(directory, generation)
            db.execute("COMMIT")
        finally:
            db.close()
        object_ids = np.array([r[0] for r in rows], dtype=np.int64)
        _check_agreement(directory, manifest, index, object_ids)
        return cls(
            directory=directory,
            manifest=manifest,
            index=index,
            object_ids=object_ids,
            object_image=np.array([r[1] for r in rows], dtype=np.int64),
            boxes=np.array([r[2:6] for r in rows], dtype=np.float32).reshape(-1, 4),
            labels=[r[6] for r in rows],
            scores=np.array([np.nan if r[7] is None else r[7] for r in rows], dtype=np.float32),
            image_paths={i: path for i, path, status, _ in images if status == "indexed"},
            skipped=[(path, error) for _, path, status, error in images if status == "skipped"],
        )

    @property
    def gallery_root(self) -> Path:
        return Path(self.manifest.gallery_root)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row positions (into ``boxes``, ``labels``, ...) of object ``ids``."""
        return np.searchsorted(self.object_ids, ids)

    def absolute_path(self, image_id: int) -> Path:
        return self.gallery_root / self.image_paths[int(image_id)]


def _read_vectors(directory: Path, generation: int) -> faiss.Index:
    path = vectors_path(directory, generation)
    if not path.is_file():
        raise StoreError(f"{path} is missing: the index is damaged; rebuild it")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise StoreError(f"{path} cannot be read by FAISS ({str(error).splitlines()[0]}); rebuild the index") from None


def _check_agreement(directory: Path, manifest: Manifest, index: faiss.Index, object_ids: np.ndarray) -> None:
    if index.d != manifest.dimension:
        raise StoreError(
            f"{directory}: vectors have dimension {index.d} but the manifest says {manifest.dimension}; "
            "rebuild the index"
        )
    vector_ids = np.sort(faiss.vector_to_array(index.id_map)) if index.ntotal else np.zeros(0, dtype=np.int64)
    if len(vector_ids) != len(object_ids) or not np.array_equal(vector_ids, object_ids):
        raise StoreError(
            f"{directory}: {index.ntotal} vectors but {len(object_ids)} object rows, or their ids differ; "
            "the index is damaged; rebuild it"
        )
