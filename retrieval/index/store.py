"""One store folder of an index, and its single writer.

A store folder (``DIR/store-<n>``, see layout.py) holds::

    manifest.json        what made the vectors (manifest.py); settings never change within a store
    metadata.sqlite      images (path, size, mtime, sha256, status, error) and objects (box, label, score)
    vectors.<gen>.faiss  the FAISS index (vector_index.py); FAISS id = object id

Commit protocol, so that a reader or a crash at any moment sees one whole
committed state: the new ``vectors.<gen+1>.faiss`` is written atomically first;
then one SQLite transaction applies every row change and sets
``generation = gen+1``; then the manifest's counts are refreshed and the old
vectors file removed. SQLite's ``generation`` names the vectors file that
matches its rows; a vectors file of another generation is debris and is
removed when a writer next opens the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import faiss
import numpy as np

from ..atomic import atomic_write
from ..errors import StoreError
from ..sources.images import LoadedImage
from .manifest import Manifest
from ..objects import ImageObjects
from ..settings import IndexSettings
from .stores.faiss_kinds import all_vectors, filled_index, new_index, plan_for, remove_ids, set_search_params, vector_ids

METADATA_NAME = "metadata.sqlite"

SCHEMA = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- relative to the gallery root, '/' separators
    width INTEGER, height INTEGER,      -- pixels after EXIF orientation
    file_size INTEGER,                  -- bytes
    mtime_ns INTEGER,                   -- modification time, nanoseconds since the epoch
    sha256 TEXT,                        -- of the file's bytes
    source_key TEXT,                    -- digest of the image's given boxes (annotations); NULL otherwise
    status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
    error TEXT                          -- why a skipped file was skipped
);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY,             -- the FAISS id of its vector
    image_id INTEGER NOT NULL REFERENCES images(id),
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,  -- original pixels
    label TEXT,
    score REAL                          -- detection score; NULL for annotation or whole-image boxes
);
CREATE INDEX objects_by_image ON objects(image_id);
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO state VALUES ('generation', 0), ('next_object_id', 0);
"""


@dataclass(frozen=True)
class ImageState:
    """What the store knows of one gallery file (``status`` is ``indexed`` or ``skipped``)."""

    file_size: int | None
    mtime_ns: int | None
    sha256: str | None
    source_key: str | None
    status: str


def vectors_path(folder: Path, generation: int) -> Path:
    return Path(folder) / f"vectors.{generation}.faiss"


def connect(folder: Path, read_only: bool = False) -> sqlite3.Connection:
    """Open a store's metadata database (WAL mode, so readers never block the writer)."""
    path = Path(folder) / METADATA_NAME
    if read_only:
        if not path.is_file():
            raise StoreError(f"{folder} has no {METADATA_NAME}: the index is damaged; rebuild it")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def write_vectors(index: faiss.Index, path: Path) -> None:
    """Write a FAISS index atomically; a failed write raises the ``OSError`` behind it."""

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))

    atomic_write(path, write)


class StoreWriter:
    """Changes one store folder: images in and out, made durable by ``commit()``.

    Row changes and vectors are held in an open SQLite transaction and in
    memory until ``commit()``. Any failure to write (disk full, read-only
    folder) raises ``StoreError``; the store then keeps its last committed state
    and this writer must be abandoned.
    """

    def __init__(self, folder: Path, manifest: Manifest, db: sqlite3.Connection, index: faiss.Index) -> None:
        self.folder = folder
        self.manifest = manifest
        self.db = db
        self.index = index
        state = dict(db.execute("SELECT key, value FROM state").fetchall())
        self.generation = state["generation"]
        self.next_object_id = state["next_object_id"]
        self.changed = False  # anything to commit?
        self._removed: list[np.ndarray] = []  # object ids to take out of the index at the next commit
        self.db.execute("BEGIN")

    @classmethod
    def create(cls, folder: Path, manifest: Manifest) -> "StoreWriter":
        """Make a new, empty store folder (committed as generation 0)."""
        with _writing(folder):
            folder.mkdir(parents=True)
            db = connect(folder)
            db.executescript(SCHEMA)
            plan = plan_for(manifest.settings.index_type, 0, manifest.dimension)
            manifest = replace(manifest, vectors=plan.to_dict())
            index = new_index(plan, manifest.dimension)
            write_vectors(index, vectors_path(folder, 0))
            manifest.save(folder)
            return cls(folder, manifest, db, index)

    @classmethod
    def open(cls, folder: Path, settings: IndexSettings | None = None) -> "StoreWriter":
        """Open an existing store at its last committed state, removing debris a crash left.

        ``settings`` (with the same ``vector_settings``) replace the recorded ones from the next commit:
        another precision or index type for the vectors to come.
        """
        manifest, generation, index, _, _ = read_store(folder)
        with _writing(folder):
            for path in folder.glob("vectors.*.faiss"):
                if path != vectors_path(folder, generation):
                    path.unlink()
            for path in folder.glob(".*.tmp"):
                path.unlink()
            writer = cls(folder, manifest, connect(folder), index)
        if settings is not None and replace(settings, device=manifest.settings.device) != manifest.settings:
            writer.manifest = replace(manifest, settings=settings)
            writer.changed = True
        return writer

    def images(self) -> dict[str, ImageState]:
        """Every file the store knows, by path relative to the gallery root (committed or not)."""
        rows = self.db.execute("SELECT path, file_size, mtime_ns, sha256, source_key, status FROM images").fetchall()
        return {row[0]: ImageState(*row[1:]) for row in rows}

    def put_image(
        self, rel_path: str, image: LoadedImage, objects: ImageObjects, source_key: str | None = None
    ) -> None:
        """Record an indexed image and its objects, replacing whatever was stored for that path."""
        vectors = objects.vectors
        if vectors is None or vectors.shape != (len(objects), self.manifest.dimension):
            raise ValueError(f"{rel_path}: expected ({len(objects)}, {self.manifest.dimension}) vectors")
        with _writing(self.folder):
            image_id = self._replace_image_row(
                rel_path,
                (image.width, image.height, image.file_size, image.mtime_ns, image.sha256, source_key, "indexed", None),
            )
            ids = np.arange(self.next_object_id, self.next_object_id + len(objects), dtype=np.int64)
            self.db.executemany(
                "INSERT INTO objects (id, image_id, x1, y1, x2, y2, label, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (int(i), image_id, *map(float, box), label, None if np.isnan(score) else float(score))
                    for i, box, label, score in zip(ids, objects.boxes, objects.labels, objects.scores)
                ],
            )
            if len(objects):
                self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            self.next_object_id += len(objects)
            self.changed = True

    def put_skipped(
        self, rel_path: str, reason: str, file_size: int | None = None, mtime_ns: int | None = None
    ) -> None:
        """Record a file (or folder) that could not be indexed and why, replacing what was stored for it."""
        with _writing(self.folder):
            stored = self.db.execute(
                "SELECT status, error, file_size, mtime_ns FROM images WHERE path = ?", (rel_path,)
            ).fetchone()
            if stored == ("skipped", reason, file_size, mtime_ns):
                return
            self._replace_image_row(rel_path, (None, None, file_size, mtime_ns, None, None, "skipped", reason))
            self.changed = True

    def touch(self, rel_path: str, file_size: int, mtime_ns: int) -> None:
        """Record a new size and mtime for a file whose content (sha256) did not change."""
        with _writing(self.folder):
            self.db.execute(
                "UPDATE images SET file_size = ?, mtime_ns = ? WHERE path = ?", (file_size, mtime_ns, rel_path)
            )
            self.changed = True

    def remove(self, rel_paths: Iterable[str]) -> int:
        """Remove these images, their objects and vectors; return how many images were removed."""
        removed = 0
        with _writing(self.folder):
            for rel_path in rel_paths:
                row = self.db.execute("SELECT id FROM images WHERE path = ?", (rel_path,)).fetchone()
                if row is None:
                    continue
                self._remove_objects(row[0])
                self.db.execute("DELETE FROM images WHERE id = ?", (row[0],))
                removed += 1
                self.changed = True
        return removed

    def counts(self) -> dict[str, int]:
        """``{"images", "objects", "skipped"}`` as of the open transaction."""
        (images,) = self.db.execute("SELECT COUNT(*) FROM images WHERE status = 'indexed'").fetchone()
        (skipped,) = self.db.execute("SELECT COUNT(*) FROM images WHERE status = 'skipped'").fetchone()
        (objects,) = self.db.execute("SELECT COUNT(*) FROM objects").fetchone()
        return {"images": images, "objects": objects, "skipped": skipped}

    def commit(self) -> None:
        """Make every change so far durable, as one step (see the module docstring); nothing to do without changes."""
        if not self.changed:
            return
        generation = self.generation + 1
        self._settle_vectors()
        with _writing(self.folder):
            write_vectors(self.index, vectors_path(self.folder, generation))
            self.db.execute("UPDATE state SET value = ? WHERE key = 'generation'", (generation,))
            self.db.execute("UPDATE state SET value = ? WHERE key = 'next_object_id'", (self.next_object_id,))
            self.db.execute("COMMIT")
            old = vectors_path(self.folder, self.generation)
            self.generation = generation
            self.changed = False
            self.db.execute("BEGIN")
            self.manifest = self.manifest.with_counts(**self.counts())
            self.manifest.save(self.folder)
            old.unlink(missing_ok=True)

    def _settle_vectors(self) -> None:
        """Apply pending removals, and move the vectors to the index kind their count now calls for."""
        if self._removed:
            self.index = remove_ids(self.index, self.manifest.plan, np.concatenate(self._removed))
            self._removed = []
        current = self.manifest.plan
        plan = plan_for(self.manifest.settings.index_type, self.index.ntotal, self.manifest.dimension, current)
        if plan != current:
            ids, vectors = all_vectors(self.index)
            self.index = filled_index(plan, self.manifest.dimension, ids, vectors)
            self.manifest = replace(self.manifest, vectors=plan.to_dict())
        set_search_params(self.index, plan)

    def close(self) -> None:
        """Commit what is pending and close the database."""
        self.commit()
        self.db.execute("COMMIT")
        self.db.close()

    def abandon(self) -> None:
        """Drop uncommitted changes and close (after a failure)."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def _replace_image_row(self, rel_path: str, values: tuple) -> int:
        row = self.db.execute("SELECT id FROM images WHERE path = ?", (rel_path,)).fetchone()
        if row is None:
            cursor = self.db.execute(
                "INSERT INTO images (path, width, height, file_size, mtime_ns, sha256, source_key, status, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rel_path, *values),
            )
            return int(cursor.lastrowid)
        self._remove_objects(row[0])
        self.db.execute(
            "UPDATE images SET width = ?, height = ?, file_size = ?, mtime_ns = ?, sha256 = ?, source_key = ?, "
            "status = ?, error = ? WHERE id = ?",
            (*values, row[0]),
        )
        return int(row[0])

    def _remove_objects(self, image_id: int) -> None:
        ids = [r[0] for r in self.db.execute("SELECT id FROM objects WHERE image_id = ?", (image_id,)).fetchall()]
        if ids:
            self._removed.append(np.array(ids, dtype=np.int64))
            self.db.execute("DELETE FROM objects WHERE image_id = ?", (image_id,))


@contextlib.contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """Turn a failure to write into one ``StoreError`` naming the folder and the cause."""
    try:
        yield
    except OSError as error:
        raise StoreError(f"cannot write to index {folder} ({error.strerror or error})") from None
    except sqlite3.Error as error:
        raise StoreError(f"cannot write to index {folder} (SQLite: {error})") from None


def read_store(store: Path) -> tuple[Manifest, int, faiss.Index, list[tuple], list[tuple]]:
    """Read one store folder's last committed state, in one read transaction, and check that it agrees.

    Returns ``(manifest, generation, FAISS index, object rows, image rows)``: object rows are
    ``(id, image_id, x1, y1, x2, y2, label, score)`` sorted by id, image rows ``(id, path, status, error)``
    sorted by path.
    """
    manifest = Manifest.load(store)
    db = connect(store, read_only=True)
    try:
        db.execute("BEGIN")
        generation = db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0]
        objects = db.execute("SELECT id, image_id, x1, y1, x2, y2, label, score FROM objects ORDER BY id").fetchall()
        images = db.execute("SELECT id, path, status, error FROM images ORDER BY path").fetchall()
        index = _read_vectors(store, generation)
        set_search_params(index, manifest.plan)
        db.execute("COMMIT")
    except Exception as error:
        if isinstance(error, StoreError):
            raise
        raise StoreError(f"{store} cannot be read ({type(error).__name__}: {error}); the index is damaged") from None
    finally:
        db.close()
    _check_agreement(store, manifest, index, np.array([r[0] for r in objects], dtype=np.int64))
    return manifest, generation, index, objects, images


def read_generation(store: Path) -> int:
    """The last committed generation of one store folder (a single small read)."""
    db = connect(store, read_only=True)
    try:
        return int(db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0])
    except sqlite3.Error as error:
        raise StoreError(f"{store} cannot be read ({error}); the index is damaged") from None
    finally:
        db.close()


class VectorsMissing(StoreError):
    """The vectors file of the committed generation is missing (damage, or a commit that raced the read)."""


def _read_vectors(store: Path, generation: int) -> faiss.Index:
    path = vectors_path(store, generation)
    if not path.is_file():
        raise VectorsMissing(f"{path} is missing: the index is damaged; rebuild it")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        if not path.is_file():
            raise VectorsMissing(f"{path} is missing: the index is damaged; rebuild it") from None
        raise StoreError(f"{path} cannot be read by FAISS ({str(error).splitlines()[0]}); rebuild the index") from None


def _check_agreement(store: Path, manifest: Manifest, index: faiss.Index, object_ids: np.ndarray) -> None:
    if index.d != manifest.dimension:
        raise StoreError(
            f"{store}: vectors have dimension {index.d} but the manifest says {manifest.dimension}; rebuild the index"
        )
    stored = vector_ids(index)
    if len(stored) != len(object_ids) or not np.array_equal(stored, object_ids):
        raise StoreError(
            f"{store}: {index.ntotal} vectors but {len(object_ids)} object rows, or their ids differ; "
            "the index is damaged; rebuild it"
        )
