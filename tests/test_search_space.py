"""Whitening, DBA and α-QE: each checked against plain numpy, re-derived on a settings change without
reading an image again, crash-safe like the stored vectors, and reachable from the CLI and the HTTP API."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from starlette.testclient import TestClient

from retrieval import IndexSettings, Searcher, build_index, index_info
from retrieval.cli.main import main
from retrieval.errors import StoreError
from retrieval.images import LoadedImage
from retrieval.index.layout import HEAD_NAME, point
from retrieval.index.manifest import Manifest
from retrieval.index.snapshot import IndexSnapshot
from retrieval.index.store import StoreWriter
from retrieval.models.registry import EMBEDDERS, EmbedderEntry, register_embedder
from retrieval.objects import ImageObjects
from retrieval.search import whitening as whitening_module
from retrieval.search.rerank import Rerank, augmented
from retrieval.search.searcher import rank
from retrieval.server import ServerState, create_app
from retrieval.testing.vectors import unit_mixture
from retrieval.testing.rows import all_rows

DIM = 24


# -- numpy references --------------------------------------------------------------------------------------


def normalised(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def reference_whiten(gallery: np.ndarray, dims: int):
    """PCA whitening written out: centre, leading eigenvectors, (λ + 0.1 mean λ)^-1/2, normalise."""
    mean = gallery.astype(np.float64).mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov((gallery - mean).T, bias=True))
    order = np.argsort(-eigenvalues)[:dims]
    shrinkage = whitening_module.SHRINKAGE * eigenvalues.mean()
    projection = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + shrinkage)
    return lambda rows: normalised((rows - mean) @ projection)


def reference_expand(vector: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """``vector`` plus each neighbour weighted by its cosine with ``vector`` to the power alpha, normalised."""
    total = vector.astype(np.float64).copy()
    for neighbour in neighbours:
        total += max(float(neighbour @ vector), 0.0) ** alpha * neighbour
    return normalised(total)


def reference_dba(vectors: np.ndarray, k: int, alpha: float = 3.0) -> np.ndarray:
    out = []
    for i, vector in enumerate(vectors):
        order = [j for j in np.argsort(-(vectors @ vector)) if j != i][:k]
        out.append(reference_expand(vector, vectors[order], alpha))
    return np.array(out)


# -- an index of synthetic vectors, written with the store writer -------------------------------------------


def open_index(tmp_path: Path, **settings) -> StoreWriter:
    chosen = IndexSettings(embedder="resnet50", objects="whole", weights="random", **settings)
    embedder = {"name": "resnet50", "dimension": DIM, "weights": {"source": "random", "seed": 0}}
    writer = StoreWriter.create(tmp_path / "index" / "store-1", Manifest(chosen, embedder, None, str(tmp_path)))
    point(tmp_path / "index", HEAD_NAME, writer.folder)
    return writer


def put(writer: StoreWriter, vectors: np.ndarray, start: int = 0) -> None:
    """One item per vector, keys ``<n>.jpg`` from ``start``."""
    for n, vector in enumerate(vectors, start=start):
        one = ImageObjects(np.array([[0, 0, 2, 2]], np.float32), [None], np.full(1, np.nan, np.float32), vector[None])
        writer.put_item(f"{n}.jpg", LoadedImage(np.zeros((4, 4, 3), np.uint8), f"{n:064d}", 1, 1), one)


def synthetic_index(tmp_path: Path, vectors: np.ndarray, **settings) -> IndexSnapshot:
    writer = open_index(tmp_path, **settings)
    put(writer, vectors)
    writer.close()
    return IndexSnapshot.load(tmp_path / "index")


def ranking(snapshot: IndexSnapshot, query: np.ndarray, rerank: Rerank | None = None) -> tuple[list, np.ndarray]:
    """Every object of ``snapshot`` ranked for ``query``: ``([object ids], scores)``."""
    results = rank(snapshot, query, top_k=len(snapshot.vectors), group="object", rerank=rerank)
    return [r.object_id for r in results], np.array([r.score for r in results])


GALLERY = unit_mixture(60, DIM, 6, seed=3)
QUERY = unit_mixture(1, DIM, 6, seed=4)[0]


# -- the arithmetic ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [60, 10])  # more vectors than dimensions, and fewer
def test_a_whitened_gallery_vector_finds_itself_with_score_one(tmp_path, count):
    snapshot = synthetic_index(tmp_path, GALLERY[:count], whiten=-1)
    assert snapshot.space.vectors.dimension == min(DIM, count - 1)  # capped at the rank
    for object_id in (0, count // 2, count - 1):
        ids, scores = ranking(snapshot, GALLERY[object_id])
        assert ids[0] == object_id and scores[0] == pytest.approx(1.0, abs=1e-5)
        assert np.isfinite(scores).all()


def test_whitened_search_equals_numpy_whitening_and_cosine(tmp_path):
    snapshot = synthetic_index(tmp_path, GALLERY, whiten=8)
    whiten = reference_whiten(GALLERY, 8)
    want = whiten(GALLERY) @ whiten(QUERY[None])[0]
    ids, scores = ranking(snapshot, QUERY)
    assert ids == list(np.argsort(-want))
    np.testing.assert_allclose(scores, np.sort(want)[::-1], atol=1e-4)
    assert snapshot.space.vectors.dimension == 8 and snapshot.vectors.dimension == DIM
    np.testing.assert_allclose(snapshot.vectors.reconstruct(snapshot.vectors.ids()), GALLERY, atol=1e-6)  # kept raw


def test_dba_equals_a_numpy_reference_and_is_what_the_index_searches(tmp_path):
    np.testing.assert_allclose(augmented(GALLERY, 4), reference_dba(GALLERY, 4), atol=1e-5)
    np.testing.assert_allclose(augmented(GALLERY, 4, alpha=1.0), reference_dba(GALLERY, 4, 1.0), atol=1e-5)
    np.testing.assert_array_equal(augmented(GALLERY[:1], 4), GALLERY[:1])  # no neighbour: unchanged
    snapshot = synthetic_index(tmp_path, GALLERY, whiten=8, dba=4)
    searched = snapshot.space.vectors.reconstruct(snapshot.vectors.ids())
    np.testing.assert_allclose(searched, reference_dba(reference_whiten(GALLERY, 8)(GALLERY), 4), atol=1e-4)


def test_aqe_with_k_0_is_no_reranking_and_aqe_equals_a_numpy_reference(tmp_path):
    snapshot = synthetic_index(tmp_path, GALLERY, dba=2)
    plain = ranking(snapshot, QUERY)
    zero = ranking(snapshot, QUERY, Rerank("aqe", k=0))
    assert zero[0] == plain[0] and np.array_equal(zero[1], plain[1])
    searched = snapshot.space.vectors.reconstruct(snapshot.vectors.ids())
    top = np.argsort(-(searched @ QUERY))[:5]
    expanded = reference_expand(QUERY, searched[top], 3.0)
    want = searched @ expanded
    ids, scores = ranking(snapshot, QUERY, Rerank("aqe", k=5, alpha=3.0))
    assert ids == list(np.argsort(-want)) and ids != plain[0]
    np.testing.assert_allclose(scores, np.sort(want)[::-1], atol=1e-5)


def test_whitening_is_relearned_when_the_gallery_doubles_and_reused_until_then(tmp_path):
    writer = open_index(tmp_path, whiten=-1)
    put(writer, GALLERY[:10])
    writer.commit()
    first = IndexSnapshot.load(tmp_path / "index").space.whitening
    put(writer, GALLERY[10:19], start=10)
    writer.commit()
    reused = IndexSnapshot.load(tmp_path / "index").space
    assert reused.whitening.learned_on == 10 and reused.vectors.dimension == 9
    np.testing.assert_array_equal(reused.whitening.projection, first.projection)
    put(writer, GALLERY[19:20], start=19)
    writer.close()
    relearned = IndexSnapshot.load(tmp_path / "index")
    assert relearned.space.whitening.learned_on == 20 and relearned.space.vectors.dimension == 19
    assert relearned.manifest.vectors["search"]["learned_on"] == 20
    assert sorted(p.name for p in (relearned.store / "search").iterdir()) == [str(relearned.generation)]


def test_a_crash_between_the_saved_vectors_and_the_sqlite_commit_leaves_the_last_generation(tmp_path, monkeypatch):
    import retrieval.index.store as store_module

    writer = open_index(tmp_path, whiten=8, dba=2)
    put(writer, GALLERY[:30])
    writer.commit()
    before = IndexSnapshot.load(tmp_path / "index")
    put(writer, GALLERY[30:], start=30)

    def crash(db, description):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store_module, "write_description", crash)
    with pytest.raises(StoreError, match="disk I/O error"):
        writer.commit()
    writer.abandon()
    folder = before.store / "search"
    assert sorted(p.name for p in folder.iterdir()) == [str(before.generation), str(before.generation + 1)]
    after = IndexSnapshot.load(tmp_path / "index")  # generation g, with its own searched vectors
    assert after.generation == before.generation and len(after.space.vectors) == 30
    (after_ids, after_scores), (before_ids, before_scores) = ranking(after, QUERY), ranking(before, QUERY)
    assert after_ids == before_ids and np.array_equal(after_scores, before_scores)
    StoreWriter.open(before.store).abandon()  # a writer clears the debris
    assert sorted(p.name for p in folder.iterdir()) == [str(before.generation)]


# -- through the pipeline, the CLI and the HTTP API, with a toy embedder ---------------------------------------


class GridEmbedder:
    """Each box → the mean colour of its 2 x 4 cells, minus grey, as a unit 24-vector; counts its calls."""

    dimension = DIM
    identity = {"source": "toy", "name": "grid"}
    calls = 0

    def embed(self, images, boxes):
        GridEmbedder.calls += 1
        out = []
        for image, image_boxes in zip(images, boxes):
            rows = []
            for x1, y1, x2, y2 in np.reshape(image_boxes, (-1, 4)).astype(int):
                crop = image[y1:y2, x1:x2].astype(np.float32) / 255 - 0.5
                cells = [cell.mean((0, 1)) for band in np.array_split(crop, 2) for cell in np.array_split(band, 4, 1)]
                rows.append(np.concatenate(cells))
            out.append(normalised(np.array(rows, np.float32).reshape(-1, DIM)))
        return out


@pytest.fixture
def toy(tmp_path):
    """The grid embedder registered, and a gallery of 30 random blotchy 32 x 32 images."""
    register_embedder("grid-test", EmbedderEntry(build=lambda settings, device, detector: GridEmbedder()))
    rng = np.random.default_rng(0)
    (tmp_path / "g").mkdir()
    for n in range(30):
        small = rng.integers(0, 255, (2, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.NEAREST).save(tmp_path / "g" / f"{n:02d}.png")
    yield tmp_path / "g"
    EMBEDDERS.unregister("grid-test")


TOY = dict(embedder="grid-test", objects="whole", device="cpu")


def search_files(index: Path) -> list[str]:
    """What the active store's ``search`` folder holds (``[]`` when there is no such folder)."""
    folder = IndexSnapshot.load(index).store / "search"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_turning_whitening_and_dba_on_and_off_rederives_without_embedding_again(tmp_path, toy):
    index = tmp_path / "i"
    build_index(toy, index, IndexSettings(**TOY), progress=False)
    stored = IndexSnapshot.load(index).vectors.reconstruct(IndexSnapshot.load(index).vectors.ids())
    assert search_files(index) == []
    for whiten, dba, dimension in ((8, 0, 8), (8, 3, 8), (-1, 3, DIM), (0, 3, DIM), (0, 0, DIM)):
        GridEmbedder.calls = 0
        summary = build_index(toy, index, IndexSettings(**TOY, whiten=whiten, dba=dba), progress=False)
        assert (GridEmbedder.calls, summary.unchanged, summary.added, summary.rebuilt) == (0, 30, 0, False)
        snapshot = IndexSnapshot.load(index)
        assert (snapshot.manifest.settings.whiten, snapshot.manifest.settings.dba) == (whiten, dba)
        assert snapshot.space.vectors.dimension == dimension
        assert (snapshot.space.whitening is not None) == bool(whiten)
        np.testing.assert_array_equal(snapshot.vectors.reconstruct(snapshot.vectors.ids()), stored)
        generation = str(snapshot.generation)
        derived = [f"{generation}/segment.1.faiss", f"{generation}/vectors.{generation}.json"]
        expected = [generation, *derived] + [f"{generation}/whitening.npz"] * bool(whiten)
        assert search_files(index) == (sorted(expected) if whiten or dba else [])
    assert "search" not in index_info(index)["vectors"]


def test_query_evaluate_and_info_take_the_search_space_and_rerank_options(tmp_path, toy):
    index = tmp_path / "i"
    build_index(toy, index, IndexSettings(**TOY, whiten=8, dba=2), progress=False)
    runner = CliRunner()
    info = runner.invoke(main, ["info", "--index", str(index)])
    assert "search     PCA-whitened to 8 of 24 dimensions (learned on 30 vectors), DBA with 2 neighbours (alpha 3)" in (
        info.output
    )

    def query(*options):
        done = runner.invoke(main, ["query", str(toy / "05.png"), "--index", str(index), "--json", *options])
        assert done.exit_code == 0, done.output
        return [(r["object_id"], r["score"]) for r in json.loads(done.stdout)["results"]]

    plain, expanded = query(), query("--rerank", "aqe", "--qe-k", "4", "--qe-alpha", "2")
    assert query("--rerank", "aqe", "--qe-k", "0") == plain
    want = Searcher(index).query(toy / "05.png", top_k=10, rerank=Rerank("aqe", 4, 2.0))
    assert expanded == [(r.object_id, r.score) for r in want] and expanded != plain
    bad = runner.invoke(main, ["query", str(toy / "05.png"), "--index", str(index), "--rerank", "aqe", "--qe-k", "-1"])
    assert bad.exit_code == 1 and bad.stderr == "error: --qe-k -1 must lie between 0 and 1000\n"
    truth = {"queries": [{"image": f"g/{n:02d}.png", "positives": [f"g/{n:02d}.png"]} for n in range(5)]}
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    report = runner.invoke(
        main,
        [
            "evaluate",
            "--index",
            str(index),
            "--ground-truth",
            str(tmp_path / "gt.json"),
            "--json",
            "--rerank",
            "aqe",
            "--qe-k",
            "3",
        ],
    )
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["rerank"] == {"rerank": "aqe", "qe_k": 3, "qe_alpha": 3.0}


def test_the_http_api_takes_rerank_fields(tmp_path, toy):
    index = tmp_path / "i"
    build_index(toy, index, IndexSettings(**TOY, whiten=8), progress=False)
    app = TestClient(create_app(ServerState(index, device="cpu")))
    snapshot = IndexSnapshot.load(index)
    table = all_rows(snapshot)
    image_id = int(table.object_image[3])  # object 3's image: the whole of it is the object's box
    want = Searcher(index).query(
        snapshot.gallery_root / table.image_paths[int(image_id)], top_k=5, group="object", rerank=Rerank("aqe", 4, 2.0)
    )
    options = {"top_k": "5", "group": "object", "rerank": "aqe", "qe_k": "4", "qe_alpha": "2"}
    body = app.post("/api/query", data={"image_id": str(image_id), **options}).json()
    assert body["query"] == {"box": None, "group": "object", "top_k": 5, "rerank": "aqe", "qe_k": 4, "qe_alpha": 2.0}
    assert [(r["object_id"], r["score"]) for r in body["results"]] == [(r.object_id, r.score) for r in want]
    similar = app.get("/api/objects/3/similar", params=options).json()
    assert [r["object_id"] for r in similar["results"]] == [r.object_id for r in want]
    plain = app.get("/api/objects/3/similar", params={**options, "rerank": "none"}).json()
    assert [r["score"] for r in plain["results"]] != [r["score"] for r in similar["results"]]
    refusals = {
        ("qe_k", "-1"): "qe_k -1 must lie between 0 and 1000",
        ("qe_k", ""): "qe_k '' must be a whole number",
        ("rerank", "nope"): "unknown rerank 'nope': use one of none, aqe",
        ("qe_alpha", "nan"): "qe_alpha nan must be a finite number",
    }
    for (field, value), detail in refusals.items():
        refused = app.post("/api/query", data={"image_id": "3", field: value})
        assert (refused.status_code, refused.json()["detail"]) == (422, detail)
