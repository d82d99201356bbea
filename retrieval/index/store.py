"""One store folder of an index, and its single writer.

A store folder (``DIR/store-<n>``, see layout.py) holds::

    manifest.json        what made the vectors (manifest.py); vector settings never change within a store
    metadata.sqlite      items and objects (metadata.py)
    vectors.<gen>.*      the vector store's files of generation <gen> (stores/; FAISS: segments, segments.py)
    search/<gen>/        with --whiten or --dba: the searched vectors derived from those (search_space.py)

Commit protocol, so that a reader or a crash at any moment sees one whole committed state: the vector
store writes generation ``gen+1`` atomically first, and the searched vectors derived from it if any; then
one SQLite transaction applies every row change and sets ``generation = gen+1``; then the manifest is
refreshed and the old generation's files removed.
SQLite's ``generation`` names the vectors that match its rows; files of another generation are debris,
removed when a writer next opens the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import StoreError
from ..images import LoadedImage
from ..objects import ImageObjects
from ..settings import IndexSettings
from .manifest import FORMAT_VERSION, Manifest
from .metadata import (
    Committed,
    ItemState,
    connect,
    count_items,
    create_tables,
    migrate,
    read_committed,
    write_description,
)
from .search_space import derive, discard_space, load_whitening, split_description
from .stores import STORES, VectorStore, store_name


@dataclass(frozen=True)
class VideoRecord:
    """A video read to its end: its file (``path``, relative to the gallery root), frame size, fingerprint,
    the sampling its frames were taken with (``sources.video.VideoSampling.signature``), and a ``note`` when
    it broke off before its end (``None`` when whole)."""

    path: str
    width: int
    height: int
    file_size: int
    mtime_ns: int
    sha256: str
    sampling: str
    note: str | None = None


class StoreWriter:
    """Changes one store folder: items in and out, made durable by ``commit()``.

    Row changes are held in an open SQLite transaction, vector changes in the vector store, until
    ``commit()``. Any failure to write (disk full, read-only folder) raises ``StoreError``; the store
    then keeps its last committed state and this writer must be abandoned.
    """

    def __init__(self, folder: Path, manifest: Manifest, db: sqlite3.Connection, vectors: VectorStore) -> None:
        self.folder = folder
        self.manifest = manifest
        self.db = db
        self.vectors = vectors
        state = dict(db.execute("SELECT key, value FROM state").fetchall())
        self.generation = state["generation"]
        self.next_object_id = state["next_object_id"]
        self.changed = False  # anything to commit?
        self.replaced_store: str | None = None  # a store whose files go once the move to another is committed
        self.whitening = None  # the committed whitening (search_space.py), reused until relearning is due
        self.db.execute("BEGIN")

    @classmethod
    def create(cls, folder: Path, manifest: Manifest) -> "StoreWriter":
        """Make a new, empty store folder (committed as generation 0)."""
        with _writing(folder):
            folder.mkdir(parents=True)
            db = connect(folder)
            create_tables(db)
            vectors = STORES.get(manifest.settings.vector_store).create(manifest.settings, manifest.dimension)
            vectors.save(folder, 0)
            write_description(db, vectors.describe())
            manifest = replace(manifest, vectors=vectors.describe())
            manifest.save(folder)
            return cls(folder, manifest, db, vectors)

    @classmethod
    def open(cls, folder: Path, settings: IndexSettings | None = None) -> "StoreWriter":
        """Open an existing store at its last committed state, removing debris a crash left.

        ``settings`` (with the same ``vector_settings``) replace the recorded ones from the next commit:
        another precision, index type or vector store for the vectors (moved at the next commit).
        """
        manifest, vectors, committed = read_store(folder)
        generation = committed.generation
        with _writing(folder):
            entry = STORES.get(store_name(manifest.vectors))
            entry.discard(folder, generation)
            discard_space(folder, generation)
            for path in folder.glob(".*.tmp"):
                path.unlink()
            db = connect(folder)
            migrated = migrate(db)
            writer = cls(folder, manifest, db, vectors)
            writer.whitening = load_whitening(folder, generation, split_description(manifest.vectors)[1])
        if migrated or manifest.format_version != FORMAT_VERSION:
            writer.changed = True  # the next commit writes the current manifest format
        if settings is not None and replace(settings, device=manifest.settings.device) != manifest.settings:
            writer.manifest = replace(manifest, settings=settings)
            writer.changed = True
            where = ("vector_store", "index_type", "milvus_uri")
            if any(getattr(settings, name) != getattr(manifest.settings, name) for name in where):
                writer.vectors = _moved(vectors, settings, folder, generation, manifest.vectors)
                if settings.vector_store != store_name(manifest.vectors):
                    writer.replaced_store = store_name(manifest.vectors)
        return writer

    def items(self) -> dict[str, ItemState]:
        """Every item the store knows, by key (committed or not)."""
        rows = self.db.execute(
            "SELECT key, file_size, mtime_ns, sha256, source_key, status, path, kind FROM items"
        ).fetchall()
        return {row[0]: ItemState(*row[1:]) for row in rows}

    def item_paths(self) -> dict[str, str]:
        """The file each item comes from (relative to the gallery root), by key (committed or not)."""
        return dict(self.db.execute("SELECT key, path FROM items").fetchall())

    def put_item(
        self,
        key: str,
        image: LoadedImage,
        objects: ImageObjects,
        source_key: str | None = None,
        *,
        path: str | None = None,
        frame: tuple[int, float] | None = None,
    ) -> None:
        """Record an indexed item and its objects, replacing what was stored for it.

        ``path`` is the file it comes from, relative to the gallery root (default: the key, as for a folder);
        ``frame`` makes it a video frame: ``(its number in the video, its time in seconds)``, ``image`` then
        carrying the video's fingerprint.
        """
        vectors = objects.vectors
        if vectors is None or vectors.shape != (len(objects), self.manifest.dimension):
            raise ValueError(f"{key}: expected ({len(objects)}, {self.manifest.dimension}) vectors")
        kind, number, time = ("frame", *frame) if frame is not None else ("image", None, None)
        with _writing(self.folder):
            item_id = self._replace_item_row(
                key,
                (path or key, image.width, image.height, image.file_size, image.mtime_ns, image.sha256, source_key)
                + ("indexed", None, kind, number, time),
            )
            ids = np.arange(self.next_object_id, self.next_object_id + len(objects), dtype=np.int64)
            self.db.executemany(
                "INSERT INTO objects (id, item_id, x1, y1, x2, y2, label, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (int(i), item_id, *map(float, box), label, None if np.isnan(score) else float(score))
                    for i, box, label, score in zip(ids, objects.boxes, objects.labels, objects.scores)
                ],
            )
            self.vectors.add(ids, vectors)
            self.next_object_id += len(objects)
            self.changed = True

    def put_video(self, key: str, video: VideoRecord) -> None:
        """Record that the video ``key`` was read to its end (its frames were put before), replacing its row."""
        values = (video.path, video.width, video.height, video.file_size, video.mtime_ns, video.sha256)
        with _writing(self.folder):
            self._replace_item_row(key, values + (video.sampling, "indexed", video.note, "video", None, None))
            self.changed = True

    def put_skipped(
        self,
        key: str,
        reason: str,
        file_size: int | None = None,
        mtime_ns: int | None = None,
        *,
        path: str | None = None,
        kind: str = "image",
    ) -> None:
        """Record an item (or a file or folder) that could not be indexed and why, replacing what was stored."""
        with _writing(self.folder):
            stored = self.db.execute(
                "SELECT status, error, file_size, mtime_ns FROM items WHERE key = ?", (key,)
            ).fetchone()
            if stored == ("skipped", reason, file_size, mtime_ns):
                return
            values = (path or key, None, None, file_size, mtime_ns, None, None, "skipped", reason, kind, None, None)
            self._replace_item_row(key, values)
            self.changed = True

    def touch(self, key: str, file_size: int, mtime_ns: int, whole_file: bool = False) -> None:
        """Record a new size and mtime for an item whose content (sha256) did not change; ``whole_file``: for
        every item of the file ``key`` is (a video and its frames)."""
        where = "path = (SELECT path FROM items WHERE key = ?)" if whole_file else "key = ?"
        with _writing(self.folder):
            self.db.execute(f"UPDATE items SET file_size = ?, mtime_ns = ? WHERE {where}", (file_size, mtime_ns, key))
            self.changed = True

    def forget_file(self, path: str, keep: Iterable[str] = ()) -> int:
        """Remove every item of the file ``path`` (a video's row and frames) but those keyed in ``keep``."""
        kept = set(keep)
        rows = self.db.execute("SELECT key FROM items WHERE path = ?", (path,)).fetchall()
        return self.remove(key for (key,) in rows if key not in kept)

    def remove(self, keys: Iterable[str]) -> int:
        """Remove these items, their objects and vectors; return how many items were removed."""
        removed = 0
        with _writing(self.folder):
            for key in keys:
                row = self.db.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()
                if row is None:
                    continue
                self._remove_objects(row[0])
                self.db.execute("DELETE FROM items WHERE id = ?", (row[0],))
                removed += 1
                self.changed = True
        return removed

    def counts(self) -> dict[str, int]:
        """``{"images", "videos", "frames", "objects", "skipped"}`` as of the open transaction."""
        return count_items(self.db)

    def commit(self) -> None:
        """Make every change so far durable, as one step (see the module docstring); nothing to do without changes."""
        if not self.changed:
            return
        generation = self.generation + 1
        with _writing(self.folder):
            self.vectors.save(self.folder, generation)
            search, whitening = derive(self.folder, self.vectors, self.manifest.settings, generation, self.whitening)
            description = {**self.vectors.describe(), **({"search": search} if search else {})}
            self.db.execute("UPDATE state SET value = ? WHERE key = 'generation'", (generation,))
            self.db.execute("UPDATE state SET value = ? WHERE key = 'next_object_id'", (self.next_object_id,))
            write_description(self.db, description)
            self.db.execute("COMMIT")
            self.generation, self.whitening = generation, whitening
            self.changed = False
            self.db.execute("BEGIN")
            counted = self.manifest.with_counts(**self.counts())
            self.manifest = replace(counted, vectors=description, format_version=FORMAT_VERSION)
            self.manifest.save(self.folder)
            STORES.get(store_name(self.manifest.vectors)).discard(self.folder, generation)
            discard_space(self.folder, generation)
            if self.replaced_store is not None:
                STORES.get(self.replaced_store).discard(self.folder, -1)  # every generation of the old store
                self.replaced_store = None

    def close(self) -> None:
        """Commit what is pending, and the merges of segments still running (each waited for), and close."""
        self.commit()
        merge_waiting = getattr(self.vectors, "merge_waiting", None)  # a store that merges in the background
        while merge_waiting is not None and merge_waiting(wait=True):
            self.changed = True
            self.commit()
        self.db.execute("COMMIT")
        self.db.close()

    def abandon(self) -> None:
        """Drop uncommitted changes and close (after a failure)."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def _replace_item_row(self, key: str, values: tuple) -> int:
        """Insert or overwrite the row of ``key`` with ``values`` (path, width, ..., status, error, kind, frame,
        time)."""
        row = self.db.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()
        if row is None:
            cursor = self.db.execute(
                "INSERT INTO items (key, path, width, height, file_size, mtime_ns, sha256, source_key, status, error, "
                "kind, frame, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, *values),
            )
            return int(cursor.lastrowid)
        self._remove_objects(row[0])
        self.db.execute(
            "UPDATE items SET path = ?, width = ?, height = ?, file_size = ?, mtime_ns = ?, sha256 = ?, "
            "source_key = ?, status = ?, error = ?, kind = ?, frame = ?, time = ? WHERE id = ?",
            (*values, row[0]),
        )
        return int(row[0])

    def _remove_objects(self, item_id: int) -> None:
        ids = [r[0] for r in self.db.execute("SELECT id FROM objects WHERE item_id = ?", (item_id,)).fetchall()]
        if ids:
            self.vectors.remove(np.array(ids, dtype=np.int64))
            self.db.execute("DELETE FROM objects WHERE item_id = ?", (item_id,))


def _moved(vectors: VectorStore, settings: IndexSettings, folder: Path, generation: int, recorded: dict) -> VectorStore:
    """The vectors under ``settings``' store (the same one reloaded with its new options, or a new one)."""
    entry = STORES.get(settings.vector_store)
    if settings.vector_store == store_name(recorded):
        return entry.load(folder, generation, split_description(recorded)[0], settings)
    moved = entry.create(settings, vectors.dimension)
    ids = vectors.ids()
    moved.add(ids, vectors.reconstruct(ids))
    return moved


@contextlib.contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """Turn a failure to write into one ``StoreError`` naming the folder and the cause."""
    try:
        yield
    except OSError as error:
        raise StoreError(f"cannot write to index {folder} ({error.strerror or error})") from None
    except sqlite3.Error as error:
        raise StoreError(f"cannot write to index {folder} (SQLite: {error})") from None


def read_store(store: Path, db: sqlite3.Connection | None = None) -> tuple[Manifest, VectorStore, Committed]:
    """Read one store folder's last committed state, in one read transaction, and check that it agrees.

    Returns ``(manifest, vector store, committed)``: no item or object row is read (``rows.py`` looks them
    up by id); the check compares the number of vectors with the number of object rows, and the dimensions.
    ``db``: a read-only connection to the store's metadata to read through and leave open (default: one of
    its own, closed after).
    """
    manifest = Manifest.load(store)
    own_db = db is None
    db = connect(store, read_only=True) if own_db else db
    try:
        db.execute("BEGIN")
        committed = read_committed(db)
        if committed.description is not None:  # what the commit recorded wins over the manifest's copy
            manifest = replace(manifest, vectors=committed.description)
        own = split_description(manifest.vectors)[0]
        vectors = STORES.get(store_name(own)).load(store, committed.generation, own, manifest.settings)
        db.execute("COMMIT")
    except Exception as error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(error, StoreError):
            raise
        raise StoreError(f"{store} cannot be read ({type(error).__name__}: {error}); the index is damaged") from None
    finally:
        if own_db:
            db.close()
    _check_agreement(store, manifest, vectors, committed.counts["objects"])
    return manifest, vectors, committed


def _check_agreement(store: Path, manifest: Manifest, vectors: VectorStore, objects: int) -> None:
    if vectors.dimension != manifest.dimension:
        raise StoreError(
            f"{store}: vectors have dimension {vectors.dimension} but the manifest says {manifest.dimension}; "
            "rebuild the index"
        )
    if len(vectors) != objects:
        raise StoreError(
            f"{store}: {len(vectors)} vectors but {objects} object rows; the index is damaged; rebuild it"
        )
