"""Killed at any moment, out of disk space, or in a read-only folder: the index survives and resumes."""

import os
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing, contextmanager

import numpy as np
import pytest
import torch

from retrieval import IndexSettings, Searcher, build_index
from retrieval.errors import StoreError
from retrieval.models import ResNet50Embedder
from retrieval.index.snapshot import IndexSnapshot
from retrieval.testing.rows import all_rows

from tests.children import finish_child, give_to_nobody, kill_child, run_in_child, shared_folder, start_child
from tests.conftest import RANDOM_WHOLE as WHOLE
from tests.conftest import copy_demo_images


@pytest.fixture(scope="module")
def embedder():
    return ResNet50Embedder("random", torch.device("cpu"))


def content(index) -> dict:
    """Everything an index holds, keyed by image path: sha256, boxes, labels, scores and vectors."""
    snapshot = IndexSnapshot.load(index)
    with closing(sqlite3.connect(f"file:{snapshot.store / 'metadata.sqlite'}?mode=ro", uri=True)) as db:
        shas = dict(db.execute("SELECT path, sha256 FROM items WHERE status = 'indexed'").fetchall())
    table = all_rows(snapshot)
    found = {path: {"sha256": shas[path], "objects": []} for path in table.image_paths.values()}
    for row, object_id in enumerate(table.object_ids):
        path = table.image_paths[int(table.object_image[row])]
        found[path]["objects"].append(
            (table.boxes[row].tolist(), table.labels[row], snapshot.vectors.reconstruct(np.array([object_id]))[0])
        )
    return found


def assert_same_content(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for path, entry in expected.items():
        assert actual[path]["sha256"] == entry["sha256"]
        assert [(b, label) for b, label, _ in actual[path]["objects"]] == [
            (b, label) for b, label, _ in entry["objects"]
        ]
        for (_, _, got), (_, _, want) in zip(actual[path]["objects"], entry["objects"]):
            np.testing.assert_allclose(got, want, atol=1e-6)


def assert_loads_and_answers(index, embedder) -> int:
    """The index loads, agrees with itself, and finds each of a few stored vectors as its own best match."""
    searcher = Searcher(index, embedder=embedder)
    snapshot = searcher.snapshot
    table = all_rows(snapshot)
    assert len(set(table.object_image.tolist())) == len(table.image_paths) == len(snapshot.vectors)
    for object_id in table.object_ids[:3]:
        (top,) = searcher.search(snapshot.vectors.reconstruct(np.array([object_id]))[0], top_k=1, group="object")
        assert top.object_id == int(object_id) and top.score > 0.999
    return len(table.image_paths)


def test_killed_at_random_moments_the_index_stays_usable_and_resumes_to_the_same_content(tmp_path, embedder):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 40)
    rng = np.random.default_rng(2026)
    kills = completions = 0
    started = time.monotonic()
    while kills < 20 or completions == 0:
        assert time.monotonic() - started < 240, f"only {kills} kills in 240 s"
        pid, pipe = start_child(
            build_index, gallery, index, prune=True, settings=WHOLE, commit_seconds=0, progress=False
        )
        time.sleep(rng.uniform(0.0, 1.5))
        if kill_child(pid, pipe):
            kills += 1
        else:
            completions += 1
            if kills < 20:  # change the gallery, so that the next runs have work to be killed in
                names = sorted(p.name for p in gallery.iterdir())
                for name in names[:3]:
                    (gallery / name).unlink()
                shutil.copy(gallery / names[5], gallery / names[3])  # changed content under an existing name
                copy_demo_images(gallery, 12, start=40 + 12 * completions)
        if (index / "HEAD").exists():
            assert_loads_and_answers(index, embedder)
    result = run_in_child(build_index, gallery, index, WHOLE, prune=True, commit_seconds=0, progress=False)
    assert result.error is None, result.error
    reference = run_in_child(build_index, gallery, tmp_path / "reference", WHOLE, progress=False)
    assert reference.error is None, reference.error
    assert_same_content(content(index), content(tmp_path / "reference"))
    assert kills >= 20


def test_killed_during_a_rebuild_the_old_index_answers_until_the_new_one_is_complete(tmp_path, embedder):
    from torchvision.models import resnet50

    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 160)
    assert run_in_child(build_index, gallery, index, WHOLE, progress=False).error is None
    old = content(index)
    weights = tmp_path / "other.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    other = IndexSettings(**{**WHOLE.to_dict(), "weights": str(weights)})
    assert run_in_child(build_index, gallery, tmp_path / "fresh", other, progress=False).error is None
    new = content(tmp_path / "fresh")
    rng = np.random.default_rng(7)
    kills_before_the_switch = 0
    for attempt in range(40):
        pid, pipe = start_child(build_index, gallery, index, other, rebuild=True, commit_seconds=0, progress=False)
        time.sleep(rng.uniform(0.3, 1.5) * 1.15**attempt)  # longer and longer: the rebuild ends on any machine
        killed = kill_child(pid, pipe)
        if IndexSnapshot.load(index).manifest.settings.weights == "random":
            assert killed
            assert_same_content(content(index), old)  # the old index, whole, while the new one is built
            kills_before_the_switch += 1
            continue
        assert_same_content(content(index), new)  # switched: the new index, whole
        break
    else:
        pytest.fail("the rebuild never finished between kills")
    assert kills_before_the_switch >= 3
    run_in_child(build_index, gallery, index, other, rebuild=True, progress=False)  # clears what a kill left
    assert sorted(p.name for p in index.iterdir() if p.name.startswith("store-")) == [
        IndexSnapshot.load(index).store.name
    ]


@contextmanager
def small_disk(folder, megabytes):
    """A tmpfs of ``megabytes`` mounted at ``folder``, or ``None`` where mounting is not allowed."""
    folder.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
        if os.geteuid() == 0
        else False
    )
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def index_with_file_size_limit(gallery, index, limit_bytes):
    """Update ``index`` with every file this process writes limited to ``limit_bytes`` (writes past it fail)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return build_index(gallery, index, WHOLE, commit_seconds=0, progress=False)


def test_a_full_disk_stops_the_run_with_a_clear_error_and_the_old_index_survives(tmp_path, embedder):
    gallery = tmp_path / "gallery"
    copy_demo_images(gallery, 6)
    with small_disk(tmp_path / "disk", 16) as disk:
        index = (disk or tmp_path) / "index"
        assert run_in_child(build_index, gallery, index, WHOLE, progress=False).error is None
        before = content(index)
        copy_demo_images(gallery, 30, start=6)
        if disk is not None:  # fill the disk, leaving room for a few commits only
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            (disk / "filler").write_bytes(b"\0" * (free - 400_000))
            result = run_in_child(build_index, gallery, index, WHOLE, commit_seconds=0, progress=False)
            expected_causes = ("No space left on device", "database or disk is full")
        else:  # no tmpfs here: limit file sizes instead
            result = run_in_child(index_with_file_size_limit, gallery, index, 300_000)
            expected_causes = ("File too large", "disk I/O error", "database or disk is full")
        assert result.error is not None and result.error.startswith("StoreError: cannot write to index ")
        assert any(cause in result.error for cause in expected_causes), result.error
        assert "the index keeps its last committed state (" in result.error
        assert "run the same command again to resume" in result.error
        kept = content(index)
        assert all(kept[path]["sha256"] == entry["sha256"] for path, entry in before.items())
        assert 6 <= assert_loads_and_answers(index, embedder) < 36
        if disk is not None:
            (disk / "filler").unlink()
        assert run_in_child(build_index, gallery, index, WHOLE, progress=False).error is None
        assert run_in_child(build_index, gallery, tmp_path / "reference", WHOLE, progress=False).error is None
        assert_same_content(content(index), content(tmp_path / "reference"))


def test_an_index_folder_made_read_only_mid_run_keeps_its_last_commit(embedder):
    folder = shared_folder()
    try:
        gallery, index = folder / "gallery", folder / "index"
        copy_demo_images(gallery, 6)
        assert run_in_child(build_index, gallery, index, WHOLE, progress=False).error is None
        give_to_nobody(index)
        copy_demo_images(gallery, 30, start=6)
        store = IndexSnapshot.load(index).store
        first = IndexSnapshot.load(index).generation
        pid, pipe = start_child(
            build_index, gallery, index, WHOLE, commit_seconds=0, progress=False, drop_privileges=True
        )
        deadline = time.monotonic() + 60
        while IndexSnapshot.load(index).generation < first + 2:
            assert time.monotonic() < deadline, "the update made no commit"
            time.sleep(0.01)
        store.chmod(0o555)
        result = finish_child(pid, pipe)
        store.chmod(0o755)
        assert result.error is not None and "Permission denied" in result.error, result.error
        assert "the index keeps its last committed state (" in result.error
        assert 8 <= assert_loads_and_answers(index, embedder) < 36
        summary = build_index(gallery, index, progress=False)
        assert summary.images == 36
        build_index(gallery, folder / "reference", WHOLE, progress=False)
        assert_same_content(content(index), content(folder / "reference"))
    finally:
        shutil.rmtree(folder)


def test_a_failed_write_is_one_store_error_in_process(tmp_path, monkeypatch):
    """The same failure raised in this process: a StoreError naming the cause, not an OSError traceback."""
    import errno

    import retrieval.index.segments

    gallery = tmp_path / "gallery"
    copy_demo_images(gallery, 2)
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    copy_demo_images(gallery, 2, start=2)

    def disk_full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(retrieval.index.segments, "atomic_write", disk_full)
    with pytest.raises(StoreError) as error:
        build_index(gallery, tmp_path / "index", progress=False)
    assert str(error.value) == (
        f"cannot write to index {IndexSnapshot.load(tmp_path / 'index').store} (No space left on device); "
        "the index keeps its last committed state (2 images). Fix that, then run the same command again to resume"
    )
    assert len(IndexSnapshot.load(tmp_path / "index").vectors) == 2
