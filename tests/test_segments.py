"""The FAISS store in segments: a commit writes what changed, searches read every segment as one index,
merges (background and ``retrieval compact``) keep what is stored, readers keep their generation."""

import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from retrieval.cli.main import main
from retrieval.index import segments as seg
from retrieval.index import faiss_kinds
from retrieval.index.snapshot import IndexSnapshot
from retrieval.index.stores import STORES
from retrieval.index.stores import faiss as faiss_store
from retrieval.index.stores.faiss import FaissStore
from retrieval.pipeline.build import build_index
from retrieval.settings import IndexSettings
from tests.conftest import copy_demo_images

DIM = 16
ENTRY = STORES.get("faiss")


def unit(rng, n):
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def settings(index_type="auto"):
    return IndexSettings(embedder="resnet50", objects="whole", weights="random", index_type=index_type)


def modified_times(folder: Path) -> dict[str, int]:
    """``st_mtime_ns`` of each committed file in ``folder``: a background merge's temporary files
    (``.name.pid.tmp``), which it may rename or remove while this looks, are not among them."""
    times = {}
    for path in folder.iterdir():
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        try:
            times[path.name] = path.stat().st_mtime_ns
        except FileNotFoundError:  # removed by a merge's clean-up between the listing and the stat
            continue
    return times


class Store:
    """A FAISS store in ``folder`` committed the way ``StoreWriter`` commits it: save, then discard."""

    def __init__(self, folder: Path, index_type="auto") -> None:
        self.folder, self.settings, self.generation = folder, settings(index_type), 0
        folder.mkdir(parents=True, exist_ok=True)
        self.store = ENTRY.create(self.settings, DIM)
        self.store.save(folder, 0)

    def commit(self) -> set[str]:
        """Save the next generation; the names of the files it wrote."""
        before = modified_times(self.folder)
        self.generation += 1
        self.store.save(self.folder, self.generation)
        ENTRY.discard(self.folder, self.generation)
        return {name for name, mtime in modified_times(self.folder).items() if before.get(name) != mtime}

    def settle(self) -> None:
        while self.store.merge_waiting(wait=True):
            self.commit()

    def reader(self) -> FaissStore:
        return ENTRY.load(self.folder, self.generation, self.store.describe(), self.settings)


def fill(store: Store, rng, batches: int, size: int, start: int = 0) -> np.ndarray:
    vectors = []
    for batch in range(batches):
        rows = unit(rng, size)
        store.store.add(np.arange(start + batch * size, start + (batch + 1) * size), rows)
        store.commit()
        vectors.append(rows)
    return np.concatenate(vectors)


def test_a_commit_writes_its_new_vectors_and_the_listing_only(tmp_path):
    store, rng = Store(tmp_path / "s", "flat"), np.random.default_rng(0)
    fill(store, rng, 5, 200)
    store.store.add(np.arange(1000, 1100), unit(rng, 100))
    written = store.commit()
    assert written == {"segment.6.faiss", "vectors.6.json"}
    size = (tmp_path / "s" / "segment.6.faiss").stat().st_size
    assert 100 * DIM * 4 <= size < 100 * DIM * 4 + 100 * 8 + 200  # the 100 vectors, their ids, a header
    store.store.remove(np.arange(10, 20))
    assert store.commit() == {"deleted.7.npy", "vectors.7.json"}  # removals: a deletions file, no vectors
    assert len(store.store) == 1090 and len(store.reader()) == 1090


def test_bytes_written_per_commit_do_not_grow_with_the_store(tmp_path):
    sizes = {}
    for total in (2_000, 20_000):
        store, rng = Store(tmp_path / str(total), "flat"), np.random.default_rng(1)
        store.store.add(np.arange(total), unit(rng, total))
        store.commit()
        store.store.add(np.arange(total, total + 500), unit(rng, 500))
        sizes[total] = sum((tmp_path / str(total) / name).stat().st_size for name in store.commit())
    assert sizes[2_000] == pytest.approx(sizes[20_000], abs=64)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "ivfpq", "hnsw", "flat mapped", "ivf mapped"])
def test_searching_segments_gives_what_one_merged_index_gives(tmp_path, monkeypatch, index_type):
    """Small segments are merged as they are read (``mapped``: each is mapped; inverted lists then stacked)."""
    index_type, *mapped = index_type.split()
    monkeypatch.setattr(faiss_store, "MAPPED_MIN_VECTORS", 0 if mapped else faiss_store.MAPPED_MIN_VECTORS)
    monkeypatch.setattr(seg, "MERGE_FACTOR", 100)  # keep every segment apart
    monkeypatch.setattr(faiss_kinds, "TRAIN_PER_LIST", 10)
    store, rng = Store(tmp_path / "s", index_type), np.random.default_rng(2)
    fill(store, rng, 1, 3000)  # ivf, ivfpq: enough to train 256 lists, one segment under a trained quantizer
    assert store.store.plan.kind == index_type
    fill(store, rng, 12, 100, start=10_000)
    removed = np.r_[5:60, 10_050:10_120]
    store.store.remove(removed)
    store.commit()
    reader = store.reader()
    assert len(reader.segments) == 13 and reader.deletions.ids.tolist() == sorted(removed.tolist())
    assert len(reader._parts()) == (13 if mapped or index_type == "hnsw" else 1)
    queries = unit(rng, 20)
    scores, ids = reader.search(queries, 10)
    assert not np.isin(ids, removed).any() and (ids >= 0).all()
    assert store.store.compact() == (13, len(removed))
    store.commit()
    merged = store.reader()
    assert len(merged.segments) == 1 and not len(merged.deletions.ids)
    merged_scores, merged_ids = merged.search(queries, 10)
    if index_type == "hnsw":  # one graph instead of many: the same vectors found, not always the same order
        assert np.mean([len(set(a) & set(b)) for a, b in zip(ids, merged_ids)]) >= 8
    else:  # exact, or inverted lists stacked under the shared quantizer: exactly one index's hits
        np.testing.assert_array_equal(ids, merged_ids)
        np.testing.assert_allclose(scores, merged_scores, atol=1e-6)
    assert np.array_equal(reader.ids(), merged.ids())
    np.testing.assert_allclose(reader.reconstruct(reader.ids()), merged.reconstruct(merged.ids()), atol=1e-6)


def test_inverted_list_segments_share_one_quantizer_and_merge_without_reencoding(tmp_path, monkeypatch):
    monkeypatch.setattr(seg, "MERGE_FACTOR", 100)
    monkeypatch.setattr(faiss_kinds, "TRAIN_PER_LIST", 10)
    store, rng = Store(tmp_path / "s", "ivfpq"), np.random.default_rng(3)
    fill(store, rng, 1, 3000)
    fill(store, rng, 4, 100, start=10_000)
    listing = seg.read_listing(tmp_path / "s", store.generation)
    trained = faiss.read_index(str(tmp_path / "s" / listing.trained))
    ivf = faiss.extract_index_ivf(trained)
    assert listing.trained and trained.ntotal == 0 and ivf.quantizer.ntotal == ivf.nlist
    for name, count in listing.segments[1:]:  # a segment holds codes and ids, not the centroids again
        assert (tmp_path / "s" / name).stat().st_size < count * (DIM // 8 + 8) + 40_000
    reader = store.reader()
    before = reader.reconstruct(reader.ids())
    store.store.compact()
    store.commit()
    after = store.reader()
    np.testing.assert_array_equal(after.reconstruct(after.ids()), before)  # codes moved, not decoded and encoded


def test_background_merges_bound_the_segments_and_keep_every_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(seg, "MERGE_FACTOR", 4)
    monkeypatch.setattr(seg, "SMALLEST_TIER", 10)
    store, rng = Store(tmp_path / "s", "flat"), np.random.default_rng(4)
    vectors = fill(store, rng, 40, 10)
    store.settle()
    reader = store.reader()
    counts = [count for _, count in seg.read_listing(tmp_path / "s", store.generation).segments]
    assert sum(counts) == 400 and len(counts) <= 3 * 3  # at most MERGE_FACTOR - 1 per tier of 10, 40, 160
    np.testing.assert_array_equal(reader.ids(), np.arange(400))
    np.testing.assert_array_equal(reader.reconstruct(np.arange(400)), vectors)
    on_disk = sorted(p.name for p in (tmp_path / "s").glob("segment.*"))
    assert on_disk == sorted(name for name, _ in seg.read_listing(tmp_path / "s", store.generation).segments)


def test_merge_choice_takes_a_full_tier_of_the_smallest_size():
    assert seg.merge_choice([1000] * 9) == []
    assert seg.merge_choice([50_000] + [1000] * 10) == list(range(1, 11))
    assert seg.merge_choice([10_000] * 10 + [900] * 3) == list(range(10))
    assert seg.merge_choice([]) == []


def mapped_files(folder: Path) -> set[str]:
    """Names of the segment files in ``folder`` this process has memory-mapped (deleted ones too)."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    paths = [line.split(maxsplit=5)[-1].removesuffix(" (deleted)") for line in lines if "segment." in line]
    return {Path(path).name for path in paths if Path(path).parent == folder}


def test_big_segments_are_mapped_and_small_ones_read_into_one(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "MAPPED_MIN_VECTORS", 100)
    store, rng = Store(tmp_path / "t", "flat"), np.random.default_rng(7)
    vectors = np.concatenate([fill(store, rng, 1, 300), fill(store, rng, 4, 50, start=300)])
    reader = store.reader()
    assert [segment.index is not None for segment in reader.segments] == [True, False, False, False, False]
    assert len(reader._parts()) == 2 and "segment.1.faiss" in mapped_files(tmp_path / "t")
    assert not mapped_files(tmp_path / "t") & {"segment.2.faiss", "segment.3.faiss", "segment.4.faiss", "segment.5.faiss"}
    np.testing.assert_array_equal(reader.reconstruct(np.arange(500)), vectors)
    scores, ids = reader.search(vectors[[0, 350, 499]], 1)
    assert ids[:, 0].tolist() == [0, 350, 499] and np.allclose(scores[:, 0], 1, atol=1e-5)


def test_a_reader_keeps_its_generation_while_its_segments_are_merged_away(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "MAPPED_MIN_VECTORS", 0)  # every segment mapped
    store, rng = Store(tmp_path / "s", "flat"), np.random.default_rng(5)
    fill(store, rng, 6, 50)
    reader = store.reader()
    scores, ids = reader.search(unit(np.random.default_rng(9), 3), 5)
    assert mapped_files(tmp_path / "s") >= {name for name, _ in seg.read_listing(tmp_path / "s", 6).segments}
    store.store.compact()
    store.commit()  # the old segment files are deleted now
    assert not (tmp_path / "s" / "segment.1.faiss").exists()
    again = reader.search(unit(np.random.default_rng(9), 3), 5)
    np.testing.assert_array_equal(again[1], ids)
    with pytest.raises(Exception, match="vectors.6.json is missing"):
        ENTRY.load(tmp_path / "s", 6, store.store.describe(), store.settings)


def test_an_uncommitted_merge_is_debris_and_its_sources_stay(tmp_path):
    store, rng = Store(tmp_path / "s", "flat"), np.random.default_rng(6)
    fill(store, rng, 3, 20)
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)), str(tmp_path / "s" / "segment.99.faiss"))
    (tmp_path / "s" / "vectors.4.json").write_text("{}")  # a listing written before a crash, never committed
    ENTRY.discard(tmp_path / "s", store.generation)
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["segment.1.faiss", "segment.2.faiss", "segment.3.faiss", "vectors.3.json"]
    assert len(store.reader()) == 60


def test_an_index_written_before_segments_is_read_and_then_written_as_segments(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 4)
    build_index(gallery, index, settings(), progress=False)
    snapshot = IndexSnapshot.load(index)
    store = snapshot.store
    legacy = faiss.IndexIDMap2(faiss.IndexFlatIP(snapshot.manifest.dimension))
    ids = snapshot.vectors.ids()
    legacy.add_with_ids(snapshot.vectors.reconstruct(ids), ids)
    for path in list(store.glob("segment.*")) + list(store.glob("vectors.*.json")):
        path.unlink()
    faiss.write_index(legacy, str(seg.legacy_path(store, snapshot.generation)))  # the layout before segments
    old = IndexSnapshot.load(index)
    np.testing.assert_array_equal(old.vectors.reconstruct(ids), snapshot.vectors.reconstruct(ids))
    copy_demo_images(gallery, 6, start=4)
    build_index(gallery, index, progress=False)
    new = IndexSnapshot.load(index)
    assert len(new.vectors) == 10 and not list(store.glob("vectors.*.faiss")) and list(store.glob("segment.*"))
    np.testing.assert_array_equal(new.vectors.reconstruct(ids), snapshot.vectors.reconstruct(ids))


def test_compact_command_merges_an_index_into_one_segment(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    names = copy_demo_images(gallery, 6)
    build_index(gallery, index, settings(), progress=False)
    for start in (6, 8):
        copy_demo_images(gallery, 2, start=start)
        build_index(gallery, index, progress=False)
    runner = CliRunner()
    assert runner.invoke(main, ["remove", "--index", str(index), str(gallery / names[0])]).exit_code == 0
    before = IndexSnapshot.load(index)
    query = before.vectors.reconstruct(before.vectors.ids()[:3])
    assert len(before.vectors.segments) == 3 and len(before.vectors.deletions.ids) == 1
    result = runner.invoke(main, ["compact", "--index", str(index)])
    assert result.exit_code == 0, result.output
    assert result.output == f"compacted 3 segments of {index} into one (9 vectors, 1 removed vector dropped) in " + \
        result.output.split(" in ")[-1]
    after = IndexSnapshot.load(index)
    assert len(after.vectors.segments) == 1 and after.generation == before.generation + 1
    np.testing.assert_array_equal(after.vectors.search(query, 5)[1], before.vectors.search(query, 5)[1])
    listing = seg.read_listing(after.store, after.generation)
    assert sorted(p.name for p in after.store.glob("segment.*")) == [listing.segments[0][0]]
    again = runner.invoke(main, ["compact", "--index", str(index)])
    assert again.exit_code == 0 and again.output == f"{index} is compact already (one segment, nothing removed to drop)\n"
    missing = runner.invoke(main, ["compact", "--index", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "does not exist" in missing.output and len(missing.output.splitlines()) == 1


def content(index: Path) -> tuple[list, np.ndarray]:
    snapshot = IndexSnapshot.load(index)
    ids = snapshot.vectors.ids()
    return ids.tolist(), snapshot.vectors.reconstruct(ids)


def test_an_indexing_run_merges_in_the_background_and_commits_the_merges_before_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(seg, "MERGE_FACTOR", 3)
    monkeypatch.setattr(seg, "SMALLEST_TIER", 1)
    gallery = tmp_path / "g"
    for start in range(0, 14, 2):  # seven runs of one commit each, and the merges they start
        copy_demo_images(gallery, 2, start=start)
        build_index(gallery, tmp_path / "i", settings(), progress=False)
    build_index(gallery, tmp_path / "one", settings(), progress=False)
    snapshot = IndexSnapshot.load(tmp_path / "i")
    counts = [count for _, count in seg.read_listing(snapshot.store, snapshot.generation).segments]
    assert sum(counts) == 14 and len(counts) <= 4 and max(counts) > 2  # merged: at most 2 segments per tier
    assert sorted(p.name for p in snapshot.store.glob("segment.*")) == sorted(n for n, _ in snapshot.vectors.listing().segments)
    ids, vectors = content(tmp_path / "i")
    reference_ids, reference = content(tmp_path / "one")
    assert ids == reference_ids
    np.testing.assert_allclose(vectors, reference, atol=1e-6)


def _index_with_a_merge_that_never_ends(gallery: Path, index: Path) -> None:
    """In a child: index with merges of every 2 segments, each merge stuck after writing half a file."""
    from retrieval.index import segment_merge

    seg.MERGE_FACTOR, seg.SMALLEST_TIER = 2, 1

    def stuck(folder, sources, *arguments):
        (Path(folder) / ".segment.half.tmp").write_bytes(b"half")
        time.sleep(3600)

    segment_merge.merged_index = stuck
    build_index(gallery, index, settings(), commit_seconds=0, progress=False)


def test_a_run_killed_during_a_background_merge_keeps_its_commits_and_resumes(tmp_path):
    from tests.children import finish_child, kill_child, start_child

    gallery, index = tmp_path / "g", tmp_path / "i"
    copy_demo_images(gallery, 40)  # 5 batches of 8, a commit after each
    pid, pipe = start_child(_index_with_a_merge_that_never_ends, gallery, index)
    deadline = time.monotonic() + 120
    while not (index / "store-1" / ".segment.half.tmp").exists() or IndexSnapshot.load(index).generation < 3:
        assert time.monotonic() < deadline, "no merge started"
        time.sleep(0.05)
    assert kill_child(pid, pipe)
    snapshot = IndexSnapshot.load(index)  # the last commit, whole
    assert len(snapshot.vectors) == len(snapshot.vectors.ids()) >= 2
    build_index(gallery, index, progress=False)
    build_index(gallery, tmp_path / "one", settings(), progress=False)
    ids, vectors = content(index)
    reference_ids, reference = content(tmp_path / "one")
    assert len(ids) == 40 and ids == reference_ids
    np.testing.assert_allclose(vectors, reference, atol=1e-6)
    store = IndexSnapshot.load(index).store
    assert not list(store.glob(".*.tmp")) and not list(store.glob("*half*"))
