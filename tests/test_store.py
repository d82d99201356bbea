"""The store folder and its writer: round trip, replacement and removal, atomic commits, agreement checks."""

import json
import sqlite3
from contextlib import closing

import faiss
import numpy as np
import pytest

from retrieval.errors import StoreError
from retrieval.images import LoadedImage
from retrieval.index.layout import HEAD_NAME, IndexLock, point
from retrieval.index.manifest import Manifest
from retrieval.objects import ImageObjects
from retrieval.settings import IndexSettings
from retrieval.index.snapshot import IndexSnapshot
from retrieval.index.store import StoreWriter
from retrieval.index.segments import read_listing
from retrieval.testing.rows import all_rows

DIM = 8


def manifest(tmp_path) -> Manifest:
    settings = IndexSettings(embedder="resnet50", objects="whole", weights="random")
    embedder = {"name": "resnet50", "dimension": DIM, "weights": {"source": "random", "seed": 0, "state_sha256": "x"}}
    return Manifest(settings, embedder, None, str(tmp_path / "gallery"))


def image(width=64, height=48, sha="ab") -> LoadedImage:
    return LoadedImage(rgb=np.zeros((height, width, 3), np.uint8), sha256=sha * 32, file_size=123, mtime_ns=1_500)


def objects(rng, n, detected=True) -> ImageObjects:
    boxes = np.array([[i, i, i + 10, i + 20] for i in range(n)], dtype=np.float32)
    scores = np.linspace(0.9, 0.5, n).astype(np.float32) if detected else np.full(n, np.nan, np.float32)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return ImageObjects(
        boxes, [f"c{i}" for i in range(n)], scores, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    )


def new_index(tmp_path) -> StoreWriter:
    writer = StoreWriter.create(tmp_path / "index" / "store-1", manifest(tmp_path))
    point(tmp_path / "index", HEAD_NAME, writer.folder)
    return writer


def build(tmp_path, rng):
    writer = new_index(tmp_path)
    first, second = objects(rng, 3), objects(rng, 2, detected=False)
    writer.put_item("a.jpg", image(), first)
    writer.put_skipped("broken.jpg", "empty file (0 bytes)", 0, 7)
    writer.put_item("sub/b.png", image(32, 32), second, source_key="k1")
    writer.close()
    return first, second


def stored_vectors(snapshot) -> np.ndarray:
    return np.vstack([snapshot.vectors.reconstruct(np.array([i]))[0] for i in snapshot.vectors.ids()])


def test_round_trip_keeps_vectors_boxes_labels_scores_and_paths(tmp_path):
    first, second = build(tmp_path, np.random.default_rng(0))
    snapshot = IndexSnapshot.load(tmp_path / "index")
    table = all_rows(snapshot)
    assert table.object_ids.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(stored_vectors(snapshot), np.vstack([first.vectors, second.vectors]))
    np.testing.assert_array_equal(table.boxes, np.vstack([first.boxes, second.boxes]))
    assert table.labels == ["c0", "c1", "c2", "c0", "c1"]
    np.testing.assert_allclose(table.scores[:3], first.scores)
    assert np.isnan(table.scores[3:]).all()
    assert sorted(table.image_paths.values()) == ["a.jpg", "sub/b.png"]
    assert table.skipped == [("broken.jpg", "empty file (0 bytes)")]
    assert snapshot.manifest.counts == {"images": 2, "objects": 5, "skipped": 1}


def test_inner_product_search_returns_the_same_vector_first(tmp_path):
    first, _ = build(tmp_path, np.random.default_rng(1))
    snapshot = IndexSnapshot.load(tmp_path / "index")
    scores, ids = snapshot.vectors.search(first.vectors[1:2], 1)
    assert ids[0, 0] == 1 and scores[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_items_table_records_key_path_size_mtime_hash_status_and_error(tmp_path):
    build(tmp_path, np.random.default_rng(2))
    with closing(sqlite3.connect(tmp_path / "index" / "store-1" / "metadata.sqlite")) as db:
        columns = "path, width, height, file_size, mtime_ns, sha256, source_key, status, error"
        assert db.execute("SELECT COUNT(*) FROM items WHERE key != path").fetchone() == (0,)  # a folder's keys
        rows = db.execute(f"SELECT {columns} FROM items ORDER BY key").fetchall()
    assert rows == [
        ("a.jpg", 64, 48, 123, 1500, "ab" * 32, None, "indexed", None),
        ("broken.jpg", None, None, 0, 7, None, None, "skipped", "empty file (0 bytes)"),
        ("sub/b.png", 32, 32, 123, 1500, "ab" * 32, "k1", "indexed", None),
    ]


def test_putting_an_image_again_replaces_its_objects_and_vectors(tmp_path):
    rng = np.random.default_rng(3)
    build(tmp_path, rng)
    writer = StoreWriter.open(tmp_path / "index" / "store-1")
    replacement = objects(rng, 1)
    writer.put_item("a.jpg", image(sha="cd"), replacement)
    writer.put_skipped("sub/b.png", "now broken")
    writer.close()
    snapshot = IndexSnapshot.load(tmp_path / "index")
    table = all_rows(snapshot)
    assert table.object_ids.tolist() == [5]  # ids are never reused
    np.testing.assert_array_equal(stored_vectors(snapshot), replacement.vectors)
    assert list(table.image_paths.values()) == ["a.jpg"]
    assert dict(table.skipped) == {"broken.jpg": "empty file (0 bytes)", "sub/b.png": "now broken"}


def test_remove_takes_rows_and_vectors_out(tmp_path):
    build(tmp_path, np.random.default_rng(4))
    writer = StoreWriter.open(tmp_path / "index" / "store-1")
    assert writer.remove(["a.jpg", "not-there.jpg"]) == 1
    writer.close()
    snapshot = IndexSnapshot.load(tmp_path / "index")
    table = all_rows(snapshot)
    assert table.object_ids.tolist() == [3, 4] and list(table.image_paths.values()) == ["sub/b.png"]


def segment_path(store, generation=1):
    """The first segment file the listing of ``generation`` names."""
    return store / read_listing(store, generation).segments[0][0]


def test_commits_are_atomic_and_leave_the_files_of_one_generation(tmp_path):
    build(tmp_path, np.random.default_rng(5))
    names = sorted(p.name for p in (tmp_path / "index" / "store-1").iterdir())
    faiss_files = [n for n in names if n.endswith((".faiss", ".json", ".npy")) and n != "manifest.json"]
    assert faiss_files == ["segment.1.faiss", "vectors.1.json"]  # generation 0 (at creation) had no vectors
    assert not [n for n in names if n.endswith(".tmp")]
    saved = json.loads((tmp_path / "index" / "store-1" / "manifest.json").read_text())
    assert saved["dimension"] == DIM and saved["counts"]["objects"] == 5 and saved["format_version"] == 2


def test_uncommitted_work_is_invisible_to_readers(tmp_path):
    rng = np.random.default_rng(6)
    writer = new_index(tmp_path)
    writer.put_item("a.jpg", image(), objects(rng, 2))
    assert len(IndexSnapshot.load(tmp_path / "index").vectors) == 0
    writer.commit()
    assert len(IndexSnapshot.load(tmp_path / "index").vectors) == 2
    writer.put_item("b.jpg", image(), objects(rng, 1))
    assert len(IndexSnapshot.load(tmp_path / "index").vectors) == 2
    writer.abandon()
    assert len(IndexSnapshot.load(tmp_path / "index").vectors) == 2


def test_opening_removes_debris_of_a_crashed_commit(tmp_path):
    build(tmp_path, np.random.default_rng(7))
    store = tmp_path / "index" / "store-1"
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)), str(store / "segment.2.faiss"))  # never committed
    (store / "vectors.2.json").write_text("{}")
    (store / "deleted.2.npy").write_bytes(b"")
    (store / ".segment.3.faiss.123.tmp").write_bytes(b"half")
    assert IndexSnapshot.load(tmp_path / "index").generation == 1
    StoreWriter.open(store).abandon()
    kept = sorted(p.name for p in store.iterdir() if p.name not in ("manifest.json", "metadata.sqlite"))
    assert [name for name in kept if not name.startswith("metadata.sqlite")] == ["segment.1.faiss", "vectors.1.json"]


def test_loading_detects_vectors_and_rows_that_disagree(tmp_path):
    build(tmp_path, np.random.default_rng(8))
    with closing(sqlite3.connect(tmp_path / "index" / "store-1" / "metadata.sqlite")) as db:
        db.execute("DELETE FROM objects WHERE id = 4")
        db.commit()
    with pytest.raises(StoreError, match="5 vectors but 4 object rows; the index is damaged"):
        IndexSnapshot.load(tmp_path / "index")


def test_loading_detects_a_missing_or_unreadable_vectors_file(tmp_path):
    build(tmp_path, np.random.default_rng(9))
    path = segment_path(tmp_path / "index" / "store-1")
    path.write_bytes(b"garbage")
    with pytest.raises(StoreError, match="segment.1.faiss cannot be read by FAISS"):
        IndexSnapshot.load(tmp_path / "index")
    path.unlink()
    with pytest.raises(StoreError, match="segment.1.faiss is missing"):
        IndexSnapshot.load(tmp_path / "index")
    (tmp_path / "index" / "store-1" / "vectors.1.json").unlink()
    with pytest.raises(StoreError, match="vectors.1.json is missing"):
        IndexSnapshot.load(tmp_path / "index")


def test_dimension_disagreement_is_detected(tmp_path):
    build(tmp_path, np.random.default_rng(10))
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM + 1)), str(segment_path(tmp_path / "index" / "store-1")))
    with pytest.raises(StoreError, match="segment.1.faiss holds vectors of dimension 9 but the store's are 8"):
        IndexSnapshot.load(tmp_path / "index")


def test_not_an_index(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        IndexSnapshot.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="is not an index \\(no HEAD\\)"):
        IndexSnapshot.load(tmp_path / "empty")


def test_manifest_round_trip_and_newer_format_refused(tmp_path):
    original = manifest(tmp_path).with_counts(images=3, objects=7, skipped=1)
    original.save(tmp_path)
    assert Manifest.load(tmp_path) == original
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(StoreError, match="format version 99; this version of retrieval reads 1"):
        Manifest.load(tmp_path)


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    with IndexLock(tmp_path / "index"):
        with pytest.raises(StoreError) as error:
            with IndexLock(tmp_path / "index"):
                pass
    assert "is being updated by another process (pid " in str(error.value)
    with IndexLock(tmp_path / "index"):  # released
        pass
