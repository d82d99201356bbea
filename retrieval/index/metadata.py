"""The metadata database of one store (``metadata.sqlite``): items, objects, and the committed generation.

An *item* is one thing a gallery source yields: an image file, a video file, or one sampled frame of a
video. It has a ``key`` (what the source calls it; a frame's: ``<video path>#t=<seconds>``), a ``kind``
(``image``, ``video``, ``frame``), the ``path`` of the file it comes from (relative to the gallery root; a
frame's: its video's), its size in pixels, the fingerprint used to notice changes (a frame carries its
video's), and whether it was indexed or skipped (and why). A frame also has its number in the video and
its time. An *object* is one box of an image or a frame; its id is the id of its vector in the vector store.
A video's own row has no objects: it records that the video was read to its end (so a killed run knows to
resume it), with a note when the file broke off midway.

Schema 3 (this one) added ``kind``, ``frame`` and ``time`` to schema 2's items; schema 2 had replaced
schema 1's ``images`` table (one file = one image, no key). A writer that opens an older store migrates it
in one transaction, and readers read any.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError

METADATA_NAME = "metadata.sqlite"
SCHEMA_VERSION = 3

TABLES = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,           -- the source's name for the item; a folder's: the path below
    path TEXT NOT NULL,                 -- the file it comes from, relative to the gallery root, '/' separators
    width INTEGER, height INTEGER,      -- pixels after EXIF orientation
    file_size INTEGER,                  -- bytes
    mtime_ns INTEGER,                   -- modification time, nanoseconds since the epoch
    sha256 TEXT,                        -- of the item's content (a folder's: the file's bytes)
    source_key TEXT,                    -- digest of the item's given boxes (annotations); NULL otherwise
    status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
    error TEXT,                         -- why a skipped item was skipped; for an indexed video, where it broke off
    kind TEXT NOT NULL DEFAULT 'image' CHECK (kind IN ('image', 'video', 'frame')),
    frame INTEGER,                      -- frames: the frame's number in its video (0 = the first)
    time REAL                           -- frames: seconds from the start of the video
);
CREATE INDEX items_by_path ON items(path);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY,             -- the id of its vector in the vector store
    item_id INTEGER NOT NULL REFERENCES items(id),
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,  -- original pixels
    label TEXT,
    score REAL                          -- detection score; NULL for annotation or whole-image boxes
);
CREATE INDEX objects_by_item ON objects(item_id);
CREATE TABLE vector_store (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    description TEXT NOT NULL           -- JSON: the store's describe() at the committed generation
);
"""
STATE = """
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO state VALUES ('generation', 0), ('next_object_id', 0);
"""

MIGRATE_FROM_1 = f"""
BEGIN IMMEDIATE;
ALTER TABLE images RENAME TO images_schema1;
ALTER TABLE objects RENAME TO objects_schema1;
DROP INDEX objects_by_image;
{TABLES}
INSERT INTO items SELECT id, path, path, width, height, file_size, mtime_ns, sha256, source_key, status, error,
    'image', NULL, NULL FROM images_schema1;
INSERT INTO objects SELECT id, image_id, x1, y1, x2, y2, label, score FROM objects_schema1;
DROP TABLE objects_schema1;
DROP TABLE images_schema1;
COMMIT;
"""

MIGRATE_FROM_2 = """
BEGIN IMMEDIATE;
ALTER TABLE items ADD COLUMN kind TEXT NOT NULL DEFAULT 'image' CHECK (kind IN ('image', 'video', 'frame'));
ALTER TABLE items ADD COLUMN frame INTEGER;
ALTER TABLE items ADD COLUMN time REAL;
CREATE INDEX items_by_path ON items(path);
COMMIT;
"""


@dataclass(frozen=True)
class ItemState:
    """What the store knows of one item (``status`` is ``indexed`` or ``skipped``)."""

    file_size: int | None
    mtime_ns: int | None
    sha256: str | None
    source_key: str | None
    status: str
    path: str = ""
    kind: str = "image"


def connect(folder: Path, read_only: bool = False, threads: bool = False) -> sqlite3.Connection:
    """Open a store's metadata database (WAL mode, so readers never block the writer); ``threads``: a read-only
    connection any thread may use (the caller serialises its use)."""
    path = Path(folder) / METADATA_NAME
    if read_only:
        if not path.is_file():
            raise StoreError(f"{folder} has no {METADATA_NAME}: the index is damaged; rebuild it")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=not threads)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def create_tables(db: sqlite3.Connection) -> None:
    db.executescript(TABLES + STATE)


def schema_version(db: sqlite3.Connection) -> int:
    """3 when the items table has ``kind``, 2 for the items table without it, 1 for the older ``images`` one."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "items" not in tables:
        return 1
    columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
    return SCHEMA_VERSION if "kind" in columns else 2


def migrate(db: sqlite3.Connection) -> bool:
    """Bring an older database to schema 3 in one transaction; True when it had to."""
    version = schema_version(db)
    if version == SCHEMA_VERSION:
        return False
    try:
        db.executescript(MIGRATE_FROM_1 if version == 1 else MIGRATE_FROM_2)  # schema 1 goes to 3 in one step
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return True


@dataclass(frozen=True)
class Committed:
    """What a reader needs of a store's committed state, without a single item or object row: its generation,
    the vector store's description (``None`` where none was committed: schema 1, the manifest's copy then
    holds), ``count_items``'s counts, the next object id (every object committed has a smaller one) and the
    schema version."""

    generation: int
    description: dict | None
    counts: dict[str, int]
    next_object_id: int
    schema: int


def read_committed(db: sqlite3.Connection) -> Committed:
    """The committed state's ``Committed`` (a few small reads and counts); call inside one read transaction."""
    state = dict(db.execute("SELECT key, value FROM state").fetchall())
    version = schema_version(db)
    row = db.execute("SELECT description FROM vector_store").fetchone() if version > 1 else None
    counts = count_items(db)
    if "next_object_id" not in state:  # a store from before the counter: every id so far is below max + 1
        state["next_object_id"] = db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM objects").fetchone()[0]
    description = json.loads(row[0]) if row else None
    return Committed(int(state["generation"]), description, counts, int(state["next_object_id"]), version)


def write_description(db: sqlite3.Connection, description: dict) -> None:
    """Record the vector store's description, inside the transaction that commits its generation."""
    db.execute("INSERT OR REPLACE INTO vector_store (id, description) VALUES (0, ?)", (json.dumps(description),))


def read_generation(store: Path) -> int:
    """The last committed generation of one store folder (a single small read)."""
    db = connect(store, read_only=True)
    try:
        return int(db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0])
    except sqlite3.Error as error:
        raise StoreError(f"{store} cannot be read ({error}); the index is damaged") from None
    finally:
        db.close()


def count_items(db: sqlite3.Connection) -> dict[str, int]:
    """``{"images", "videos", "frames", "objects", "skipped"}``: indexed images, videos and frames, objects
    (vectors) and skipped items, as ``db`` sees them (any schema)."""
    version = schema_version(db)
    table = "items" if version > 1 else "images"
    kinds = {"image": 0, "video": 0, "frame": 0}
    if version == SCHEMA_VERSION:
        rows = db.execute("SELECT kind, COUNT(*) FROM items WHERE status = 'indexed' GROUP BY kind").fetchall()
        kinds.update(dict(rows))
    else:
        kinds["image"] = db.execute(f"SELECT COUNT(*) FROM {table} WHERE status = 'indexed'").fetchone()[0]
    (skipped,) = db.execute(f"SELECT COUNT(*) FROM {table} WHERE status = 'skipped'").fetchone()
    (objects,) = db.execute("SELECT COUNT(*) FROM objects").fetchone()
    return {"images": kinds["image"], "videos": kinds["video"], "frames": kinds["frame"], "objects": objects,
            "skipped": skipped}


def read_problems(db: sqlite3.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(skipped, incomplete)`` as ``db`` sees them (any schema): ``(key, reason)`` of each skipped item, and
    ``(path, note)`` of each video indexed only up to where it broke off, each sorted by key."""
    version = schema_version(db)
    table, key = ("items", "key") if version > 1 else ("images", "path")
    skipped = db.execute(f"SELECT {key}, error FROM {table} WHERE status = 'skipped' ORDER BY {key}").fetchall()
    incomplete = []
    if version == SCHEMA_VERSION:
        incomplete = db.execute(
            "SELECT key, error FROM items WHERE kind = 'video' AND status = 'indexed' AND error IS NOT NULL "
            "ORDER BY key"
        ).fetchall()
    return [tuple(row) for row in skipped], [tuple(row) for row in incomplete]


def read_overview(store: Path) -> tuple[dict[str, int], list[tuple[str, str]], list[tuple[str, str]]]:
    """``(counts, skipped, incomplete)`` of one store's committed state, from the metadata alone (one read
    transaction; no vectors are loaded): ``count_items``'s counts and ``read_problems``' lists."""
    db = connect(store, read_only=True)
    try:
        db.execute("BEGIN")
        counts = count_items(db)
        skipped, incomplete = read_problems(db)
        db.execute("COMMIT")
    except sqlite3.Error as error:
        raise StoreError(f"{store} cannot be read ({error}); the index is damaged") from None
    finally:
        db.close()
    return counts, skipped, incomplete
