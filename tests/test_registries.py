"""The three doors: an embedder, a vector store and a gallery source, each a toy written in this file and
registered at run time, carry an index build and a query without any change to the package."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from retrieval import IndexSettings, Searcher, build_index, index_info, remove_images
from retrieval.cli.main import main
from retrieval.errors import ImageError, SettingsError
from retrieval.images import LoadedImage
from retrieval.index.snapshot import IndexSnapshot
from retrieval.index.stores import STORES, StoreEntry, VectorsMissing, register_store
from retrieval.models.registry import EMBEDDERS, EmbedderEntry, register_embedder
from retrieval.sources import SOURCES, SourceEntry, SourceListing, register_source

COLOURS = [(200, 30, 30), (40, 190, 60), (20, 50, 210), (180, 170, 40), (60, 150, 220), (220, 80, 160)]


class ColourEmbedder:
    """Each box → its mean and standard deviation per channel, plus a constant, as a unit 7-vector."""

    dimension = 7
    identity = {"source": "toy", "version": 1}

    def embed(self, images, boxes):
        out = []
        for image, image_boxes in zip(images, boxes):
            rows = []
            for x1, y1, x2, y2 in np.reshape(image_boxes, (-1, 4)).astype(int):
                crop = image[y1:y2, x1:x2].reshape(-1, 3).astype(np.float32) / 255
                rows.append(np.concatenate([crop.mean(0), crop.std(0), [0.05]]))
            vectors = np.array(rows, dtype=np.float32).reshape(-1, 7)
            out.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        return out


class NumpyStore:
    """Brute-force inner product over a numpy matrix, saved as ``vectors.<gen>.npz``."""

    def __init__(self, dimension: int, ids=None, vectors=None) -> None:
        self.dimension = dimension
        self._ids = np.zeros(0, np.int64) if ids is None else ids
        self._vectors = np.zeros((0, dimension), np.float32) if vectors is None else vectors

    def __len__(self):
        return len(self._ids)

    def add(self, ids, vectors):
        self._ids = np.concatenate([self._ids, ids])
        self._vectors = np.concatenate([self._vectors, vectors])

    def remove(self, ids):
        keep = ~np.isin(self._ids, ids)
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]

    def search(self, queries, k):
        scores = queries @ self._vectors.T
        order = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(scores, order, 1), self._ids[order]

    def ids(self):
        return np.sort(self._ids)

    def reconstruct(self, ids):
        position = {int(i): n for n, i in enumerate(self._ids)}
        return self._vectors[[position[int(i)] for i in ids]].reshape(-1, self.dimension)

    def describe(self):
        return {"store": "numpy-test", "rows": len(self._ids)}

    def save(self, folder, generation):
        np.savez(Path(folder) / f"vectors.{generation}.npz", ids=self._ids, vectors=self._vectors)


def _load_numpy(folder, generation, description, settings):
    path = Path(folder) / f"vectors.{generation}.npz"
    if not path.is_file():
        raise VectorsMissing(f"{path} is missing")
    with np.load(path) as saved:
        return NumpyStore(saved["vectors"].shape[1], saved["ids"], saved["vectors"])


def _discard_numpy(folder, keep):
    for path in Path(folder).glob("vectors.*.npz"):
        if path.name != f"vectors.{keep}.npz":
            path.unlink()


class FramesSource:
    """Each ``.npy`` file holds ``(K, H, W, 3)`` uint8 frames; item ``clip.npy#k`` is frame k of ``clip.npy``."""

    def __init__(self, root: Path, exclude=()) -> None:
        self.root = root

    def listing(self):
        keys = [
            f"{path.relative_to(self.root).as_posix()}#{k}"
            for path in sorted(self.root.glob("*.npy"))
            for k in range(np.load(path, mmap_mode="r").shape[0])
        ]
        return SourceListing(self.root, keys, [])

    def path_of(self, key):
        return key.split("#")[0]

    def fingerprint(self, key):
        info = (self.root / self.path_of(key)).stat()
        return info.st_size, info.st_mtime_ns

    def read(self, key, max_pixels, unchanged_sha256=None):
        path = self.root / self.path_of(key)
        frames = np.load(path)
        index = int(key.split("#")[1])
        if index >= len(frames):
            raise ImageError(f"{path}: no frame {index}")
        frame = np.ascontiguousarray(frames[index])
        digest = hashlib.sha256(frame.tobytes()).hexdigest()
        if digest == unchanged_sha256:
            return None
        size, mtime = self.fingerprint(key)
        return LoadedImage(frame, digest, size, mtime)


@pytest.fixture
def toys():
    """Register the three toys for one test, and take them out again."""
    register_embedder("colour-test", EmbedderEntry(build=lambda settings, device, detector: ColourEmbedder()))
    register_store("numpy-test", StoreEntry(create=lambda s, d: NumpyStore(d), load=_load_numpy, discard=_discard_numpy))
    register_source("frames-test", SourceEntry(open=FramesSource, summary="frames in .npy files"))
    yield
    EMBEDDERS.unregister("colour-test")
    STORES.unregister("numpy-test")
    SOURCES.unregister("frames-test")


def colour_gallery(folder: Path) -> None:
    """Six 40x60 images, one plain colour each, with a 10-pixel grey frame."""
    from PIL import Image

    folder.mkdir(parents=True)
    for n, colour in enumerate(COLOURS):
        pixels = np.full((40, 60, 3), 128, np.uint8)
        pixels[10:30, 10:50] = colour
        Image.fromarray(pixels).save(folder / f"c{n}.png")


TOY = dict(embedder="colour-test", objects="whole", device="cpu")


def test_a_registered_embedder_indexes_and_answers_queries(tmp_path, toys):
    colour_gallery(tmp_path / "g")
    summary = build_index(tmp_path / "g", tmp_path / "i", IndexSettings(**TOY), progress=False)
    assert (summary.images, summary.objects) == (6, 6)
    info = index_info(tmp_path / "i")
    assert info["embedder"] == "colour-test" and info["dimension"] == 7
    assert info["manifest"]["embedder"]["weights"] == {"source": "toy", "version": 1}
    results = Searcher(tmp_path / "i").query(tmp_path / "g" / "c3.png", box=(10, 10, 50, 30), top_k=3)
    assert Path(results[0].image).name == "c3.png" and results[0].item == "c3.png"
    assert [r.rank for r in results] == [1, 2, 3] and results[0].score > results[1].score


def test_the_cli_takes_a_registered_embedder_and_lists_the_registry_in_its_help(tmp_path, toys):
    colour_gallery(tmp_path / "g")
    runner = CliRunner()
    help_text = re.sub(r"-\n\s*", "-", runner.invoke(main, ["index", "--help"]).output)  # it wraps after hyphens
    assert all(name in help_text for name in ("roi", "resnet50", "colour-test"))
    done = runner.invoke(main, ["index", str(tmp_path / "g"), "--index", str(tmp_path / "i"), "--embedder",
                                "colour-test", "--objects", "whole", "--quiet"])
    assert done.exit_code == 0, done.output
    query = runner.invoke(main, ["query", str(tmp_path / "g" / "c1.png"), "--index", str(tmp_path / "i"), "--json"])
    assert query.exit_code == 0, query.output
    assert json.loads(query.stdout)["results"][0]["item"] == "c1.png"
    info = runner.invoke(main, ["info", "--index", str(tmp_path / "i")])  # a plugin's weights identity, as it is
    assert info.exit_code == 0 and '{"source": "toy", "version": 1}' in info.output, info.output


def test_a_registered_family_takes_its_argument_after_a_colon(tmp_path):
    built = []

    def build(settings, device, detector):
        built.append(settings.embedder.partition(":")[2])
        return ColourEmbedder()

    register_embedder("tint-test", EmbedderEntry(build=build, summary="toy family", argument="LEVEL"))
    try:
        assert "tint-test:LEVEL" in EMBEDDERS.labels() and "tint-test:bright" in EMBEDDERS
        help_text = "".join(CliRunner().invoke(main, ["index", "--help"]).output.split())  # wrapped anywhere
        assert "tint-test:LEVEL:toyfamily" in help_text
        colour_gallery(tmp_path / "g")
        build_index(tmp_path / "g", tmp_path / "i", IndexSettings(**{**TOY, "embedder": "tint-test:bright"}),
                    progress=False)
        assert built == ["bright"] and index_info(tmp_path / "i")["embedder"] == "tint-test:bright"
        with pytest.raises(SettingsError, match="embedder 'tint-test' needs its LEVEL: tint-test:LEVEL"):
            IndexSettings(**{**TOY, "embedder": "tint-test"})
    finally:
        EMBEDDERS.unregister("tint-test")


def test_an_unknown_part_is_refused_naming_the_known_ones():
    known = "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, hub:REPO:MODEL, resnet50, roi, timm:NAME, "
    known += "torchvision:NAME"
    with pytest.raises(SettingsError, match=rf"unknown embedder 'nope': use one of {known}$"):
        IndexSettings(embedder="nope")
    with pytest.raises(SettingsError, match=r"unknown vector store 'nope': use one of faiss"):
        IndexSettings(vector_store="nope")
    with pytest.raises(SettingsError, match=r"unknown gallery source 'nope': use one of folder"):
        IndexSettings(source="nope")


def test_a_registered_vector_store_holds_the_vectors_and_ranks_like_faiss(tmp_path, toys):
    colour_gallery(tmp_path / "g")
    build_index(tmp_path / "g", tmp_path / "faiss", IndexSettings(**TOY), progress=False)
    build_index(tmp_path / "g", tmp_path / "np", IndexSettings(**TOY, vector_store="numpy-test"), progress=False)
    store = IndexSnapshot.load(tmp_path / "np").store
    assert sorted(p.name for p in store.glob("vectors.*")) == ["vectors.1.npz"]
    assert index_info(tmp_path / "np")["vectors"] == {"store": "numpy-test", "rows": 6}
    query = tmp_path / "g" / "c4.png"
    got = Searcher(tmp_path / "np").query(query, top_k=6, group="object")
    want = Searcher(tmp_path / "faiss").query(query, top_k=6, group="object")
    assert [r.item for r in got] == [r.item for r in want]
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-6)


def test_changing_the_vector_store_moves_the_vectors_without_reading_images_again(tmp_path, toys):
    colour_gallery(tmp_path / "g")
    build_index(tmp_path / "g", tmp_path / "i", IndexSettings(**TOY), progress=False)
    before = IndexSnapshot.load(tmp_path / "i")
    summary = build_index(tmp_path / "g", tmp_path / "i", IndexSettings(**TOY, vector_store="numpy-test"),
                          progress=False)
    assert summary.unchanged == 6 and not summary.rebuilt
    after = IndexSnapshot.load(tmp_path / "i")
    assert isinstance(after.vectors, NumpyStore) and not list(after.store.glob("*.faiss"))
    np.testing.assert_allclose(after.vectors.reconstruct(after.vectors.ids()),
                               before.vectors.reconstruct(before.vectors.ids()), atol=1e-6)


def test_a_rebuild_lets_the_old_stores_vector_store_delete_its_vectors(tmp_path, toys):
    """A store that keeps vectors outside the folder (a Milvus server) is told to drop them with the folder."""
    discarded = []
    entry = STORES.get("numpy-test")
    register_store("numpy-test", StoreEntry(create=entry.create, load=entry.load,
                                            discard=lambda folder, keep: discarded.append((Path(folder).name, keep))))
    colour_gallery(tmp_path / "g")
    build_index(tmp_path / "g", tmp_path / "i", IndexSettings(**TOY, vector_store="numpy-test"), progress=False)
    colour_gallery(tmp_path / "g2")  # another gallery folder: a new store
    build_index(tmp_path / "g2", tmp_path / "i", IndexSettings(**TOY, vector_store="numpy-test"), rebuild=True,
                progress=False)
    assert ("store-1", -1) in discarded and IndexSnapshot.load(tmp_path / "i").store.name == "store-2"
    assert not (tmp_path / "i" / "store-1").exists()


def test_a_registered_gallery_source_yields_items_with_their_own_keys(tmp_path, toys):
    gallery = tmp_path / "clips"
    gallery.mkdir()
    frames = np.stack([np.full((24, 32, 3), colour, np.uint8) for colour in COLOURS[:4]])
    np.save(gallery / "clip.npy", frames)
    np.save(gallery / "other.npy", frames[::-1][:2].copy())
    settings = IndexSettings(**TOY, source="frames-test")
    summary = build_index(gallery, tmp_path / "i", settings, progress=False)
    assert (summary.images, summary.added) == (6, 6)
    with closing(sqlite3.connect(IndexSnapshot.load(tmp_path / "i").store / "metadata.sqlite")) as db:
        rows = db.execute("SELECT key, path FROM items ORDER BY key").fetchall()
    assert rows[:2] == [("clip.npy#0", "clip.npy"), ("clip.npy#1", "clip.npy")] and len(rows) == 6
    query = LoadedImage(frames[2], "q", 0, 0)
    best = Searcher(tmp_path / "i").query(query, top_k=3, group="object")
    assert {best[0].item, best[1].item} == {"clip.npy#2", "other.npy#1"} and best[0].score > 0.9999
    assert best[0].image == str(gallery / best[0].item.split("#")[0])
    again = build_index(gallery, tmp_path / "i", progress=False)  # the index's own settings: the toy source
    assert (again.unchanged, again.added) == (6, 0)
    removed = remove_images(tmp_path / "i", ["clip.npy"])  # a path names its file: every item from it goes
    assert removed == [f"clip.npy#{k}" for k in range(4)] and index_info(tmp_path / "i")["images"] == 2
