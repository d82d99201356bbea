"""An index written by the previous format (1: an ``images`` table, no item keys, FAISS implied) still loads,
answers queries, and is migrated in place by the next update, without re-reading a single image."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import numpy as np

from tests.conftest import RANDOM_WHOLE, copy_demo_images
from retrieval import Searcher, build_index, index_info, remove_images
from retrieval.index.snapshot import IndexSnapshot

FORMAT_1_SCHEMA = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER, height INTEGER, file_size INTEGER,
    mtime_ns INTEGER, sha256 TEXT, source_key TEXT,
    status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')), error TEXT
);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id),
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, label TEXT, score REAL
);
CREATE INDEX objects_by_image ON objects(image_id);
"""

SCHEMA_2_COLUMNS = "id, key, path, width, height, file_size, mtime_ns, sha256, source_key, status, error"
SCHEMA_2_ITEMS = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, path TEXT NOT NULL, width INTEGER, height INTEGER,
    file_size INTEGER, mtime_ns INTEGER, sha256 TEXT, source_key TEXT,
    status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')), error TEXT
)
"""


def downgrade_to_format_1(index) -> None:
    """Rewrite a current index exactly as format 1 laid it out (metadata schema and manifest)."""
    store = IndexSnapshot.load(index).store
    with closing(sqlite3.connect(store / "metadata.sqlite", isolation_level=None)) as db:
        db.execute("BEGIN")
        for table in ("items", "objects"):
            db.execute(f"ALTER TABLE {table} RENAME TO new_{table}")
        db.execute("DROP INDEX objects_by_item")
        for statement in FORMAT_1_SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(
            "INSERT INTO images SELECT id, path, width, height, file_size, mtime_ns, sha256, source_key, status, "
            "error FROM new_items"
        )
        db.execute("INSERT INTO objects SELECT * FROM new_objects")
        for table in ("new_objects", "new_items", "vector_store"):
            db.execute(f"DROP TABLE {table}")
        db.execute("COMMIT")
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["vectors"].pop("store")
    for name in ("vector_store", "source"):
        manifest["settings"].pop(name)
    (store / "manifest.json").write_text(json.dumps(manifest))


def tables(index) -> set[str]:
    store = IndexSnapshot.load(index).store
    with closing(sqlite3.connect(store / "metadata.sqlite")) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_format_1_index_is_read_as_it_is_then_migrated_by_the_next_update(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    names = copy_demo_images(gallery, 5)
    build_index(gallery, index, RANDOM_WHOLE, progress=False)
    want = Searcher(index).query(gallery / names[2], top_k=5)
    downgrade_to_format_1(index)
    assert "images" in tables(index) and "items" not in tables(index)

    info = index_info(index)
    assert (info["images"], info["objects"], info["manifest"]["format_version"]) == (5, 5, 2 - 1)
    got = Searcher(index).query(gallery / names[2], top_k=5)
    assert [(r.image, r.item, r.object_id) for r in got] == [(r.image, r.item, r.object_id) for r in want]
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-6)

    summary = build_index(gallery, index, progress=False)
    assert (summary.unchanged, summary.added, summary.updated) == (5, 0, 0)
    assert "items" in tables(index) and "images" not in tables(index)
    info = index_info(index)
    assert info["manifest"]["format_version"] == 2 and info["vectors"]["store"] == "faiss"
    assert [r.object_id for r in Searcher(index).query(gallery / names[2], top_k=5)] == [r.object_id for r in want]
    assert remove_images(index, [names[0]]) == [names[0]]
    assert index_info(index)["images"] == 4


def test_a_schema_2_index_gains_item_kinds_at_the_next_update_without_reading_an_image(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    names = copy_demo_images(gallery, 4)
    build_index(gallery, index, RANDOM_WHOLE, progress=False)
    store = IndexSnapshot.load(index).store
    with closing(sqlite3.connect(store / "metadata.sqlite", isolation_level=None)) as db:
        db.execute("PRAGMA legacy_alter_table = ON")  # leave the objects table's reference to "items" as it is
        db.execute("ALTER TABLE items RENAME TO items_schema3")
        db.execute(SCHEMA_2_ITEMS)
        db.execute(f"INSERT INTO items SELECT {SCHEMA_2_COLUMNS} FROM items_schema3")
        db.execute("DROP TABLE items_schema3")
    assert index_info(index)["images"] == 4  # read as it is
    summary = build_index(gallery, index, progress=False)
    assert (summary.unchanged, summary.added, summary.images) == (4, 0, 4)
    with closing(sqlite3.connect(store / "metadata.sqlite")) as db:
        kinds = db.execute("SELECT kind, COUNT(*) FROM items GROUP BY kind").fetchall()
    assert kinds == [("image", 4)] and remove_images(index, [names[1]]) == [names[1]]
