"""A snapshot loads no item or object row; a query looks up its candidates' rows, equal to the stored ones,
and survives commits (and a store folder's removal) after the snapshot was loaded."""

import shutil
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from retrieval.index import metadata
from retrieval.index.snapshot import IndexSnapshot
from retrieval.index.store import StoreWriter
from retrieval.search.searcher import rank
from tests.test_store import image, new_index, objects

FRAMES = 6  # of the video clip.mp4, one object each


def build(tmp_path, rng) -> dict[str, np.ndarray]:
    """An index of two images (3 and 2 objects) and a video's frames put out of time order; returns each
    item's vectors by key."""
    writer = new_index(tmp_path)
    vectors = {}
    for key, n in (("a.jpg", 3), ("sub/b.png", 2)):
        found = objects(rng, n)
        writer.put_item(key, image(), found)
        vectors[key] = found.vectors
    for number in (3, 0, 5, 1, 4, 2):
        found = objects(rng, 1)
        key = f"clip.mp4#t={number:.3f}"
        writer.put_item(key, image(), found, path="clip.mp4", frame=(number, float(number)))
        vectors[key] = found.vectors
    writer.close()
    return vectors


def stored(store) -> tuple[dict, dict]:
    """Every object row by id and every item row by id, read with SQL."""
    with closing(sqlite3.connect(store / "metadata.sqlite")) as db:
        rows = {r[0]: r[1:] for r in db.execute("SELECT id, item_id, x1, y1, x2, y2, label, score FROM objects")}
        items = {r[0]: r[1:] for r in db.execute("SELECT id, key, path, kind, frame, time FROM items")}
    return rows, items


def test_loading_reads_counts_but_no_row(tmp_path, monkeypatch):
    build(tmp_path, np.random.default_rng(0))
    statements = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(metadata.sqlite3, "connect", traced)
    snapshot = IndexSnapshot.load(tmp_path / "index")
    assert snapshot.counts == {"images": 2, "videos": 0, "frames": FRAMES, "objects": 11, "skipped": 0}
    assert (snapshot.held_items, snapshot.id_limit, len(snapshot.vectors)) == (8, 11, 11)
    reads = [s for s in statements if " FROM objects" in s or " FROM items" in s]
    assert reads and all("COUNT(" in s for s in reads), reads  # counts only: not one row of either table


def test_looked_up_rows_equal_the_stored_rows_and_frames_get_their_time_order(tmp_path):
    build(tmp_path, np.random.default_rng(1))
    snapshot = IndexSnapshot.load(tmp_path / "index")
    rows, items = stored(snapshot.store)
    found = snapshot.objects(np.array([10, 3, 0, 3, 99, 7], dtype=np.int64))  # 99: no such object
    assert found.ids.tolist() == [0, 3, 7, 10]
    for i, object_id in enumerate(found.ids.tolist()):
        item_id, x1, y1, x2, y2, label, score = rows[object_id]
        assert (found.item[i], found.boxes[i].tolist(), found.labels[i]) == (item_id, [x1, y1, x2, y2], label)
        assert found.scores[i] == pytest.approx(score)
        key, path, kind, number, time = items[item_id]
        item = found.items[item_id]
        assert (item.key, item.path) == (key, path)
        if kind == "frame":
            frames = sorted((t, i) for i, (_, p, k, _, t) in items.items() if k == "frame" and p == path)
            assert found.position[i] == frames.index((time, item_id)) == int(time)  # put out of order
            assert found.video[i] < -1 and (item.frame.number, item.frame.time) == (number, time)
        else:
            assert (found.video[i], found.position[i], item.frame) == (-1, -1, None)


def test_query_results_are_the_stored_rows_of_the_nearest_vectors(tmp_path):
    vectors = build(tmp_path, np.random.default_rng(2))
    snapshot = IndexSnapshot.load(tmp_path / "index")
    rows, items = stored(snapshot.store)
    query = vectors["sub/b.png"][1]
    results = rank(snapshot, query, top_k=len(snapshot.vectors), group="object")
    every = np.vstack(list(vectors.values()))
    assert len(results) < len(every)  # the video's neighbouring matching frames merge into runs
    for result in results:
        item_id, x1, y1, x2, y2, label, score = rows[result.object_id]
        key, path, kind, number, time = items[item_id]
        assert (result.item, result.image, result.box, result.label) == (
            key, str(snapshot.gallery_root / path), [x1, y1, x2, y2], label
        )
        assert result.detection_score == pytest.approx(score)
        assert (result.frame, result.time) == ((number, time) if kind == "frame" else (None, None))
    assert results[0].item == "sub/b.png" and results[0].score == pytest.approx(1.0, abs=1e-5)


def test_a_result_removed_by_a_later_commit_is_dropped_not_a_crash(tmp_path):
    vectors = build(tmp_path, np.random.default_rng(3))
    snapshot = IndexSnapshot.load(tmp_path / "index")
    writer = StoreWriter.open(snapshot.store)
    assert writer.remove(["a.jpg"]) == 1
    writer.close()
    assert len(snapshot.objects(np.array([0, 1, 2, 3]))) == 1  # a.jpg's objects 0-2 are gone
    results = rank(snapshot, vectors["a.jpg"][0], top_k=20, group="image")
    assert sorted(r.item.split("#")[0] for r in results) == ["clip.mp4", "sub/b.png"]  # what is left
    by_object = rank(snapshot, vectors["a.jpg"][0], top_k=20, group="object")
    assert len(by_object) > 2 and {r.object_id for r in by_object} <= set(range(3, 11))
    assert IndexSnapshot.load(tmp_path / "index").counts["images"] == 1


def test_a_snapshot_still_reads_its_store_after_the_folder_is_removed(tmp_path):
    vectors = build(tmp_path, np.random.default_rng(4))
    snapshot = IndexSnapshot.load(tmp_path / "index")
    shutil.rmtree(snapshot.store)  # what a finished rebuild does to the store it replaced
    (top,) = rank(snapshot, vectors["a.jpg"][2], top_k=1, group="object")
    assert (top.item, top.object_id, top.box) == ("a.jpg", 2, [2.0, 2.0, 12.0, 22.0])
