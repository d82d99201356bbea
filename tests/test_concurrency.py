"""Queries while an index is written see one committed state; a second writer is refused."""

import time

import pytest
import torch
from torchvision.models import resnet50

from retrieval import IndexSettings, build_index
from retrieval.errors import StoreError
from retrieval.index.snapshot import IndexSnapshot

from tests.children import child_done, finish_child, start_child
from tests.conftest import RANDOM_WHOLE as WHOLE
from tests.conftest import copy_demo_images


def assert_whole(snapshot: IndexSnapshot) -> None:
    """In a whole-image index every indexed image has exactly one object and every object an indexed image."""
    found = snapshot.objects(snapshot.vectors.ids())
    images = found.item.tolist()
    assert len(images) == len(set(images)) == snapshot.held_items == snapshot.counts["objects"] == len(snapshot.vectors)
    assert set(images) == set(found.items)


def test_snapshots_taken_during_an_update_are_whole_committed_states(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 10)
    build_index(gallery, index, WHOLE, progress=False)
    copy_demo_images(gallery, 30, start=10)
    pid, pipe = start_child(build_index, gallery, index, WHOLE, commit_seconds=0, progress=False)
    snapshots = []
    while not child_done(pipe):
        snapshot = IndexSnapshot.load(index)
        assert_whole(snapshot)
        snapshots.append(snapshot)
    assert finish_child(pid, pipe).error is None
    generations = [s.generation for s in snapshots]
    assert generations == sorted(generations)  # never back in time
    counts = {s.generation: s.held_items for s in snapshots}
    assert len(counts) >= 3 and min(counts.values()) >= 10
    assert IndexSnapshot.load(index).manifest.counts["images"] == 40


def test_snapshots_taken_during_a_rebuild_are_the_old_index_or_the_new_one(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 30)
    build_index(gallery, index, WHOLE, progress=False)
    weights = tmp_path / "other.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    other = IndexSettings(**{**WHOLE.to_dict(), "weights": str(weights)})
    pid, pipe = start_child(build_index, gallery, index, other, rebuild=True, commit_seconds=0, progress=False)
    kinds = []
    while True:
        snapshot = IndexSnapshot.load(index)
        assert_whole(snapshot)
        kind = snapshot.manifest.settings.weights
        assert snapshot.held_items == 30  # never the half-built new one
        kinds.append(kind)
        if kind != "random":
            break
    assert finish_child(pid, pipe).error is None
    assert kinds[0] == "random" and kinds[-1] == str(weights) and len(kinds) > 3


def test_a_second_indexer_is_refused_and_the_first_finishes_unharmed(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 30)
    pid, pipe = start_child(build_index, gallery, index, WHOLE, commit_seconds=0, progress=False)
    deadline = time.monotonic() + 60
    while not (index / "HEAD").exists():  # the first holds the lock and has begun
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(StoreError) as error:
        build_index(gallery, index, WHOLE, progress=False)
    assert str(error.value) == (
        f"index {index} is being updated by another process (pid {pid}); wait for it to finish, then run this again"
    )
    result = finish_child(pid, pipe)
    assert result.error is None and result.value.images == 30
    snapshot = IndexSnapshot.load(index)
    assert_whole(snapshot) and snapshot.held_items == 30
