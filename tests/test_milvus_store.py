"""The milvus vector store against Milvus Lite: the same rankings as FAISS, changes across runs, crash repair."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from retrieval.cli.main import main
from retrieval.errors import SettingsError, StoreError
from retrieval.index.snapshot import IndexSnapshot
from retrieval.index.store import StoreWriter
from retrieval.index.stores import milvus
from retrieval.pipeline.build import build_index
from retrieval.search.searcher import Searcher
from retrieval.settings import IndexSettings
from retrieval.testing.rows import all_rows
from tests.conftest import RANDOM_WHOLE, copy_demo_images

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed: pip install -e '.[milvus]'")
from pymilvus import MilvusClient  # noqa: E402

MILVUS = replace(RANDOM_WHOLE, vector_store="milvus")


def raw_rows(store) -> dict[int, tuple[int, int]]:
    """Every row of a store folder's Lite collection, live or not: ``{id: (added, removed)}``."""
    client = MilvusClient(str(store / "milvus.db"))
    rows = client.query("vectors", filter="id >= 0", output_fields=["added", "removed"])
    return {int(row["id"]): (int(row["added"]), int(row["removed"])) for row in rows}


def top10(index, query):
    results = Searcher(index).query(query, top_k=10, group="object")
    return [r.object_id for r in results], [r.score for r in results]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    copy_demo_images(folder, 12)
    return folder


def test_milvus_ranks_as_faiss_does(tmp_path, gallery):
    build_index(gallery, tmp_path / "faiss", RANDOM_WHOLE, progress=False)
    build_index(gallery, tmp_path / "milvus", MILVUS, progress=False)
    snapshot = IndexSnapshot.load(tmp_path / "milvus")
    table = all_rows(snapshot)
    assert (snapshot.store / "milvus.db").is_dir() and not list(snapshot.store.glob("*.faiss"))
    assert len(snapshot.vectors) == 12 and list(snapshot.vectors.ids()) == list(table.object_ids)
    faiss, milvus = Searcher(tmp_path / "faiss"), Searcher(tmp_path / "milvus")
    for query in sorted(gallery.glob("*.jpg"))[:4]:
        every = {r.object_id: r.score for r in faiss.query(query, top_k=12, group="object")}
        want = faiss.query(query, top_k=10, group="object")
        got = milvus.query(query, top_k=10, group="object")
        np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
        # the same ids, in the same order but among ties (random weights: cosines 1e-6 apart)
        np.testing.assert_allclose([every[r.object_id] for r in got], [r.score for r in got], atol=1e-5)
        assert len({r.object_id for r in got}) == 10
        assert sum(g.object_id != w.object_id for g, w in zip(got, want)) <= 2


def test_adds_and_removes_across_runs_and_retrieval_remove(tmp_path):
    gallery = tmp_path / "g"
    names = copy_demo_images(gallery, 6)
    build_index(gallery, tmp_path / "i", MILVUS, progress=False)
    copy_demo_images(gallery, 2, start=6)
    (gallery / names[0]).unlink()
    summary = build_index(gallery, tmp_path / "i", MILVUS, prune=True, progress=False)
    assert (summary.added, summary.removed) == (2, 1)
    snapshot = IndexSnapshot.load(tmp_path / "i")
    table = all_rows(snapshot)
    assert len(table.object_ids) == 7 and list(snapshot.vectors.ids()) == list(table.object_ids)
    result = CliRunner().invoke(main, ["remove", "--index", str(tmp_path / "i"), str(gallery / names[1])])
    assert result.exit_code == 0, result.output
    assert "removed 1 image" in result.output
    snapshot = IndexSnapshot.load(tmp_path / "i")
    table = all_rows(snapshot)
    assert len(table.object_ids) == 6 and list(snapshot.vectors.ids()) == list(table.object_ids)
    assert sorted(raw_rows(snapshot.store)) == list(table.object_ids)  # removed rows deleted for good
    query = gallery / names[2]
    assert top10(tmp_path / "i", query)[0][0] == table.object_ids[0]
    assert np.isclose(top10(tmp_path / "i", query)[1][0], 1.0, atol=1e-5)


def test_a_crash_between_the_milvus_write_and_the_sqlite_commit_is_repaired_at_the_next_open(tmp_path):
    gallery = tmp_path / "g"
    names = copy_demo_images(gallery, 4)
    build_index(gallery, tmp_path / "i", MILVUS, progress=False)
    store = IndexSnapshot.load(tmp_path / "i").store
    committed = sorted(raw_rows(store))
    writer = StoreWriter.open(store)
    writer.remove([names[0]])
    writer.vectors.add(np.array([100, 101]), np.eye(2, writer.manifest.dimension, dtype=np.float32))
    writer.vectors.save(store, writer.generation + 1)  # the Milvus write, then the crash: SQLite never commits
    writer.abandon()
    rows = raw_rows(store)
    assert {100, 101} <= set(rows) and rows[committed[0]][1] == 2
    assert list(IndexSnapshot.load(tmp_path / "i").vectors.ids()) == committed  # readers see generation 1 only
    StoreWriter.open(store).abandon()  # a writer's open reconciles
    assert raw_rows(store) == {i: (1, 0) for i in committed}
    summary = build_index(gallery, tmp_path / "i", MILVUS, progress=False)
    assert summary.unchanged == 4


def test_a_crash_after_the_sqlite_commit_leaves_removed_rows_deleted_at_the_next_open(tmp_path, monkeypatch):
    gallery = tmp_path / "g"
    names = copy_demo_images(gallery, 3)
    build_index(gallery, tmp_path / "i", MILVUS, progress=False)
    store = IndexSnapshot.load(tmp_path / "i").store
    dies_after_commit = replace(milvus.ENTRY, discard=lambda folder, keep: None)
    monkeypatch.setattr(milvus, "ENTRY", dies_after_commit)
    writer = StoreWriter.open(store)
    writer.remove([names[0]])
    writer.close()
    monkeypatch.undo()
    snapshot = IndexSnapshot.load(tmp_path / "i")
    table = all_rows(snapshot)
    assert len(raw_rows(store)) == 3 and list(snapshot.vectors.ids()) == list(table.object_ids)
    StoreWriter.open(store).abandon()
    assert sorted(raw_rows(store)) == list(table.object_ids)


def test_info_shows_the_store_and_a_bad_uri_is_one_line(tmp_path, gallery):
    build_index(gallery, tmp_path / "i", MILVUS, progress=False)
    result = CliRunner().invoke(main, ["info", "--index", str(tmp_path / "i")])
    assert result.exit_code == 0, result.output
    assert "vectors    milvus: uri milvus-lite, collection vectors, index FLAT, metric IP" in result.output
    result = CliRunner().invoke(
        main, ["index", str(gallery), "--index", str(tmp_path / "j"), "--vector-store", "milvus", "--milvus-uri", "x"]
    )
    assert result.exit_code != 0
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith("--milvus-uri 'x' must be milvus://HOST:PORT/COLLECTION (COLLECTION: letters, digits, _)")
    )
    with pytest.raises(SettingsError, match="--milvus-uri is only used with --vector-store milvus"):
        IndexSettings(milvus_uri="milvus://localhost:19530/photos")


def test_moving_an_index_from_faiss_to_milvus_and_back_keeps_the_vectors(tmp_path, gallery):
    build_index(gallery, tmp_path / "i", RANDOM_WHOLE, progress=False)
    before = IndexSnapshot.load(tmp_path / "i")
    want = before.vectors.reconstruct(before.vectors.ids())
    result = CliRunner().invoke(
        main, ["index", str(gallery), "--index", str(tmp_path / "i"), "--quiet", "--vector-store", "milvus"]
    )
    assert result.exit_code == 0, result.output
    after = IndexSnapshot.load(tmp_path / "i")
    assert after.store == before.store and not list(after.store.glob("*.faiss"))
    assert json.loads((after.store / "milvus.json").read_text())["collection"] == "vectors"
    np.testing.assert_allclose(after.vectors.reconstruct(after.vectors.ids()), want, atol=1e-6)
    build_index(gallery, tmp_path / "i", RANDOM_WHOLE, progress=False)
    back = IndexSnapshot.load(tmp_path / "i")
    assert not (back.store / "milvus.db").exists() and not (back.store / "milvus.json").exists()
    np.testing.assert_allclose(back.vectors.reconstruct(back.vectors.ids()), want, atol=1e-6)


def test_an_unreachable_server_is_one_line_naming_it(tmp_path, gallery):
    settings = replace(MILVUS, milvus_uri="milvus://127.0.0.1:9/photos")
    with pytest.raises(StoreError, match=r"cannot open Milvus at http://127.0.0.1:9 .*server runs and is reachable"):
        build_index(gallery, tmp_path / "i", settings, progress=False)
