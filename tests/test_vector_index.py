"""The FAISS index kinds: recall against exact search, when auto switches, training and retraining,
removal, and a store that moves from exact to approximate search as it grows."""

import faiss
import numpy as np
import pytest
from retrieval.testing.vectors import unit_mixture

from retrieval import IndexSettings, Searcher, build_index, index_info, remove_images
from retrieval.index import faiss_kinds as vi
from retrieval.errors import SettingsError
from retrieval.index.snapshot import IndexSnapshot
from retrieval.testing.rows import all_rows

from tests.conftest import RANDOM_WHOLE, copy_demo_images

COUNT, DIMENSION = 25_000, 32


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(database (N, d), queries (100, d), exact top-10 ids (100, 10))`` of clustered unit vectors."""
    clusters = COUNT // 50
    database = unit_mixture(COUNT, DIMENSION, clusters, seed=1)
    queries = unit_mixture(100, DIMENSION, clusters, seed=2)
    _, truth = faiss.knn(queries, database, 10, metric=faiss.METRIC_INNER_PRODUCT)
    return database, queries, truth


@pytest.mark.parametrize("kind, least_recall", [("flat", 1.0), ("hnsw", 0.95), ("ivf", 0.9), ("ivfpq", 0.3)])
def test_each_kind_finds_the_exact_top_10(vectors, kind, least_recall):
    database, queries, truth = vectors
    plan = vi.plan_for(kind, COUNT, DIMENSION)
    assert plan.kind == kind
    index = vi.filled_index(plan, DIMENSION, np.arange(COUNT, dtype=np.int64) * 7, database)
    assert index.ntotal == COUNT
    scores, found = index.search(queries, 10)
    recall = np.mean([len(set(f // 7) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= least_recall, recall  # chance is 10 / 25,000
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_removing_ids_from_each_kind(vectors):
    database = vectors[0][:3000]
    ids = np.arange(3000, dtype=np.int64) + 100
    for plan in (vi.FLAT, vi.plan_for("hnsw", 3000, DIMENSION), vi.IndexPlan("ivf", "IVF16,SQ8", {"nprobe": 4}, 3000)):
        index = vi.remove_ids(vi.filled_index(plan, DIMENSION, ids, database), plan, np.array([100, 150, 3099]))
        assert index.ntotal == 2997
        assert np.array_equal(vi.vector_ids(index), np.setdiff1d(ids, [100, 150, 3099]))
        kept_ids, kept = vi.all_vectors(index)
        assert np.allclose(kept[0], database[1], atol=0.02)  # id 101; SQ8 decodes within its step


def test_auto_is_exact_for_small_indexes_and_switches_past_the_limit():
    assert vi.plan_for("auto", vi.AUTO_EXACT_LIMIT, 1024) == vi.FLAT
    plan = vi.plan_for("auto", vi.AUTO_EXACT_LIMIT + 1, 1024)
    assert plan.kind == "ivf" and plan.factory.startswith("IVF") and plan.factory.endswith(",SQ8")
    assert plan.params["nprobe"] >= 1 and plan.trained_on == vi.AUTO_EXACT_LIMIT + 1
    assert vi.plan_for("auto", 10, 1024, current=plan) == plan  # once approximate, it stays so


def test_trained_kinds_stay_exact_until_there_is_enough_to_train_on_then_retrain_as_they_grow():
    assert vi.plan_for("ivf", 10_000, 64) == vi.FLAT  # 256 lists want 10,240 vectors to train on
    first = vi.plan_for("ivf", 30_000, 64)
    assert first.kind == "ivf" and first.trained_on == 30_000 and first.factory == "IVF512,SQ8"
    assert vi.plan_for("ivf", 30_000 * vi.RETRAIN_GROWTH - 1, 64, current=first) == first
    later = vi.plan_for("ivf", 30_000 * vi.RETRAIN_GROWTH, 64, current=first)
    assert later.trained_on == 30_000 * vi.RETRAIN_GROWTH and later.factory == "IVF1024,SQ8"
    other = vi.plan_for("ivfpq", 30_000, 64, current=first)  # another kind asked for: trained anew
    assert other.kind == "ivfpq" and other.factory.endswith(",PQ8")


def test_an_index_type_faiss_cannot_build_is_refused_with_the_reason_before_anything_is_written(tmp_path):
    with pytest.raises(SettingsError, match=r"--index-type 'IVF,Nonsense' is neither one of auto, flat"):
        IndexSettings(index_type="IVF,Nonsense").check_parts()
    with pytest.raises(SettingsError, match=r"--index-type 'IVF,Nonsense' is neither one of auto, flat"):
        build_index(tmp_path, tmp_path / "index", IndexSettings(index_type="IVF,Nonsense"), progress=False)
    assert not (tmp_path / "index").exists()
    IndexSettings(index_type="IVF8,Flat").check_parts()


def test_a_store_moves_to_its_index_type_once_it_can_train_and_stays_consistent(tmp_path, monkeypatch):
    monkeypatch.setattr(vi, "TRAIN_PER_LIST", 2)  # IVF4 trains on 8 vectors
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    names = copy_demo_images(gallery, 5)
    settings = IndexSettings(**{**RANDOM_WHOLE.to_dict(), "index_type": "IVF4,Flat"})
    build_index(gallery, index, settings, progress=False)
    assert index_info(index)["vectors"]["kind"] == "flat"  # 5 vectors: too few to train IVF4
    copy_demo_images(gallery, 20, start=5)
    build_index(gallery, index, progress=False)
    vectors = index_info(index)["vectors"]
    assert vectors == {"store": "faiss", "kind": "factory", "factory": "IVF4,Flat", "params": {}, "trained_on": 25,
                       "segments": 1}  # trained: every vector written again as one segment
    assert isinstance(faiss.downcast_index(IndexSnapshot.load(index).vectors.segments[0].index), faiss.IndexIVFFlat)
    searcher = Searcher(index)
    (best,) = searcher.query(gallery / names[3], top_k=1)
    assert best.image == str(gallery / names[3]) and best.score > 0.999
    remove_images(index, [str(gallery / names[0]), str(gallery / names[1])])
    snapshot = IndexSnapshot.load(index)  # loading checks that vector ids and object rows agree
    table = all_rows(snapshot)
    assert len(snapshot.vectors) == 23 == len(table.object_ids)


def test_changing_the_index_type_of_an_existing_index_needs_no_rebuild(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 6)
    build_index(gallery, index, RANDOM_WHOLE, progress=False)
    before = IndexSnapshot.load(index)
    hnsw = IndexSettings(**{**RANDOM_WHOLE.to_dict(), "index_type": "hnsw"})
    summary = build_index(gallery, index, hnsw, progress=False)
    assert summary.unchanged == 6 and not summary.rebuilt
    after = IndexSnapshot.load(index)
    assert after.manifest.vectors["kind"] == "hnsw" and after.manifest.settings.index_type == "hnsw"
    assert len(after.vectors.segments) == 1  # the new kind: every vector written again as one segment
    ids = after.vectors.ids()
    assert np.array_equal(ids, before.vectors.ids())
    assert np.allclose(after.vectors.reconstruct(ids), before.vectors.reconstruct(ids))
