"""The index directory, written by one ``IndexWriter``.

Layout::

    DIR/manifest.json        what made the vectors (see manifest.py)
    DIR/metadata.sqlite      images (path, size, mtime, sha256, status, error) and objects (box, label, score)
    DIR/vectors.<gen>.faiss  FAISS IndexIDMap2 over inner-product flat search; FAISS id = object id

Commit protocol (so that a reader or a crash always sees one whole state):
the new FAISS file ``vectors.<gen+1>.faiss`` is written atomically first, then
one SQLite transaction adds the new rows and sets ``generation = gen+1``, then
the manifest is replaced and the old FAISS file removed. SQLite's
``generation`` names the FAISS file that matches its rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import faiss
import numpy as np

from .atomic import atomic_write
from .errors import StoreError
from .images import LoadedImage
from .manifest import MANIFEST_NAME, Manifest
from .objects import ImageObjects

METADATA_NAME = "metadata.sqlite"

SCHEMA = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- relative to the gallery root, '/' separators
    width INTEGER, height INTEGER,      -- pixels after EXIF orientation
    file_size INTEGER, mtime REAL, sha256 TEXT,
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


def vectors_path(directory: Path, generation: int) -> Path:
    return Path(directory) / f"vectors.{generation}.faiss"


def connect(directory: Path, read_only: bool = False) -> sqlite3.Connection:
    """Open the metadata database (WAL mode, so readers never block the writer)."""
    path = Path(directory) / METADATA_NAME
    if read_only:
        if not path.is_file():
            raise StoreError(f"{directory} has no {METADATA_NAME}: the index is incomplete; rebuild it")
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    return connection


def check_new_index_folder(directory: Path) -> None:
    """Refuse a folder that already holds an index or other files (nothing there is ever overwritten)."""
    if (directory / MANIFEST_NAME).exists():
        raise StoreError(f"{directory} already holds an index: choose another --index folder or remove it first")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise StoreError(f"{directory} is not an empty folder: give an empty or new --index folder")


class IndexWriter:
    """Adds images and their objects to a new index directory.

    Rows and vectors are buffered in memory and made durable by ``commit()``.
    """

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        directory = Path(directory)
        check_new_index_folder(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.manifest = manifest
        self.db = connect(directory)
        self.db.executescript(SCHEMA)
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dimension))
        self.generation = 0
        self.next_object_id = 0
        self.counts = {"images": 0, "objects": 0, "skipped": 0}
        self._write_vectors(self.generation)
        manifest.save(directory)
        self.db.execute("BEGIN")

    def add_image(self, rel_path: str, image: LoadedImage, objects: ImageObjects) -> None:
        """Record one decoded image and its objects (``objects.vectors`` must be set)."""
        vectors = objects.vectors
        if vectors is None or vectors.shape != (len(objects), self.manifest.dimension):
            raise ValueError(f"{rel_path}: expected ({len(objects)}, {self.manifest.dimension}) vectors")
        cursor = self.db.execute(
            "INSERT INTO images (path, width, height, file_size, mtime, sha256, status) "
            "VALUES (?, ?, ?, ?, ?, ?, 'indexed')",
            (rel_path, image.width, image.height, image.file_size, image.mtime, image.sha256),
        )
        image_id = cursor.lastrowid
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
        self.counts["images"] += 1
        self.counts["objects"] += len(objects)

    def add_skipped(self, rel_path: str, reason: str) -> None:
        """Record a file (or folder) that could not be indexed, and why."""
        self.db.execute(
            "INSERT INTO images (path, status, error) VALUES (?, 'skipped', ?) "
            "ON CONFLICT(path) DO UPDATE SET status = 'skipped', error = excluded.error",
            (rel_path, reason),
        )
        self.counts["skipped"] += 1

    def commit(self) -> None:
        """Make everything added so far durable, as one step (see the module docstring)."""
        generation = self.generation + 1
        self._write_vectors(generation)
        self.db.execute("UPDATE state SET value = ? WHERE key = 'generation'", (generation,))
        self.db.execute("UPDATE state SET value = ? WHERE key = 'next_object_id'", (self.next_object_id,))
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")
        old = vectors_path(self.directory, self.generation)
        self.generation = generation
        self.manifest = self.manifest.with_counts(**self.counts)
        self.manifest.save(self.directory)
        old.unlink(missing_ok=True)

    def close(self) -> None:
        """Commit what is pending and close the database."""
        self.commit()
        self.db.execute("COMMIT")
        self.db.close()

    def _write_vectors(self, generation: int) -> None:
        atomic_write(vectors_path(self.directory, generation), lambda temp: faiss.write_index(self.index, str(temp)))
