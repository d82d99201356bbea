"""``--engine ray``: the same index as ``local``, a killed worker replaced, the pool sized from the cluster.

One local Ray cluster of 2 CPUs serves the module (``ray.init`` once, shut down at the end); the index
commands find it already joined. Random efficientnet_lite0 weights, fp32, each image one object.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from retrieval.cli.main import main
from retrieval.errors import EngineError, SettingsError
from retrieval.index.snapshot import IndexSnapshot
from retrieval.pipeline import ray_engine
from retrieval.pipeline.build import build_index
from retrieval.pipeline.ray_engine import PoolShape, pool_shape
from retrieval.search.searcher import Searcher
from retrieval.settings import IndexSettings
from retrieval.testing.videos import write_scene_video
from retrieval.testing.rows import all_rows
from tests.conftest import GALLERY, copy_demo_images

SETTINGS = IndexSettings(
    embedder="efficientnet_lite0", objects="whole", weights="random", device="cpu", precision="fp32"
)
OPTIONS = ["--embedder", "efficientnet_lite0", "--objects", "whole", "--weights", "random", "--device", "cpu"]
IMAGES = 40  # with the video's frames 6 batches (of 8 items): more than the pool of 2 holds in flight (4)


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """40 demo images and a 4 s scene video (its sampled frames go through the pool as pixels)."""
    folder = tmp_path_factory.mktemp("ray") / "gallery"
    copy_demo_images(folder, IMAGES)
    write_scene_video(folder / "clip.mp4", seconds=4.0, enters_at=1.0)
    return folder


@pytest.fixture(scope="module")
def local_index(gallery) -> Path:
    index = gallery.parent / "local"
    build_index(gallery, index, SETTINGS, progress=False)
    return index


def assert_same_index(index: Path, expected: Path) -> None:
    """Same items, objects (boxes, labels, their items) and vectors (fp32 tolerance)."""
    snapshot_a, snapshot_b = IndexSnapshot.load(index), IndexSnapshot.load(expected)
    vectors_a = snapshot_a.vectors.reconstruct(snapshot_a.vectors.ids())
    vectors_b = snapshot_b.vectors.reconstruct(snapshot_b.vectors.ids())
    a, b = all_rows(snapshot_a), all_rows(snapshot_b)
    assert sorted(a.item_keys.values()) == sorted(b.item_keys.values())
    keys_a = [a.item_keys[int(i)] for i in a.object_image]
    keys_b = [b.item_keys[int(i)] for i in b.object_image]
    assert keys_a == keys_b and len(keys_a) == IMAGES + len(b.frames) > IMAGES
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.labels == b.labels
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)
    assert snapshot_a.manifest.embedder == snapshot_b.manifest.embedder
    assert snapshot_a.manifest.settings == snapshot_b.manifest.settings


def top10(index: Path, gallery: Path) -> list[list[tuple[str, float]]]:
    searcher = Searcher(index, device="cpu")
    queries = [
        (gallery / "gallery-scene_000.jpg", None),
        (gallery / "clip.mp4", 2.0),
        (GALLERY / "scene_003.jpg", None),
    ]
    return [
        [(r.item, round(r.score, 4)) for r in searcher.query(image, None, top_k=10, time=time)]
        for image, time in queries
    ]


def test_ray_engine_indexes_what_local_does_with_the_same_top10(ray, gallery, local_index):
    index = gallery.parent / "ray-cli"
    args = ["index", str(gallery), "--index", str(index), *OPTIONS, "--precision", "fp32"]
    result = CliRunner().invoke(main, [*args, "--engine", "ray", "--workers", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"indexed {IMAGES} images, 1 video (")
    assert_same_index(index, local_index)
    assert top10(index, gallery) == top10(local_index, gallery)
    assert "engine" not in IndexSnapshot.load(index).manifest.settings.to_dict()  # how a run went, not the index


def test_a_worker_killed_mid_run_is_replaced_and_the_index_equals_an_uninterrupted_one(
    ray, gallery, local_index, monkeypatch, caplog
):
    send, sent = ray_engine.RayDistributor._send, []

    def send_then_kill_the_second(self, entry):
        send(self, entry)
        sent.append(entry)
        if len(sent) == 2:  # the second batch's actor dies before it could answer (8 images take ~1 s)
            ray.kill(entry.actor)

    monkeypatch.setattr(ray_engine.RayDistributor, "_send", send_then_kill_the_second)
    index = gallery.parent / "ray-killed"
    summary = build_index(gallery, index, SETTINGS, progress=False, engine="ray", workers=2)
    died = [r.getMessage() for r in caplog.records if "a Ray worker died" in r.getMessage()]
    assert len(died) == 1 and died[0].endswith("starting another and sending its batches again")
    assert any(entry is sent[1] for entry in sent[2:])  # the killed actor's batch was sent again
    assert (summary.added, summary.skipped) == (IMAGES + 1, [])
    assert_same_index(index, local_index)


def test_workers_that_keep_dying_stop_the_run_in_one_line_and_the_next_run_resumes(
    ray, gallery, local_index, monkeypatch
):
    send, sent = ray_engine.RayDistributor._send, []

    def send_and_kill_from_the_sixth(self, entry):  # the first batch is written (and committed) by then
        send(self, entry)
        sent.append(entry)
        if len(sent) >= 6:
            ray.kill(entry.actor)

    monkeypatch.setattr(ray_engine, "MAX_TRIES", 1)
    monkeypatch.setattr(ray_engine.RayDistributor, "_send", send_and_kill_from_the_sixth)
    index = gallery.parent / "ray-dying"
    with pytest.raises(EngineError, match=r"^Ray workers died 1 time on the batch from [^\n]+ run the same command"):
        build_index(gallery, index, SETTINGS, progress=False, engine="ray", workers=2, commit_seconds=0)
    assert 8 <= IndexSnapshot.load(index).manifest.counts["images"] < IMAGES
    summary = build_index(gallery, index, progress=False)
    assert summary.unchanged >= 8 and summary.added + summary.unchanged == IMAGES + 1
    assert_same_index(index, local_index)


def test_an_update_on_ray_reads_changed_files_in_the_workers_as_local_does(ray, tmp_path):
    """Touched (same content), replaced and broken files: the workers decide as the local reader does."""
    galleries = {engine: tmp_path / engine / "gallery" for engine in ("local", "ray")}
    for engine, folder in galleries.items():
        names = copy_demo_images(folder, 4)
        build_index(folder, folder.parent / "index", SETTINGS, progress=False, engine=engine)
        os.utime(folder / names[0], ns=(1, 1))
        shutil.copy(GALLERY / "scene_010.jpg", folder / names[1])
        (folder / "broken.jpg").write_bytes(b"not a jpeg")
    summaries = {}
    for engine, folder in galleries.items():
        summaries[engine] = build_index(folder, folder.parent / "index", progress=False, engine=engine)
    local, remote = summaries["local"], summaries["ray"]
    assert (
        (remote.added, remote.updated, remote.unchanged) == (local.added, local.updated, local.unchanged) == (0, 1, 3)
    )
    assert remote.skipped == local.skipped and [key for key, _ in remote.skipped] == ["broken.jpg"]
    a, b = (IndexSnapshot.load(folder.parent / "index") for folder in galleries.values())
    np.testing.assert_allclose(a.vectors.reconstruct(a.vectors.ids()), b.vectors.reconstruct(b.vectors.ids()), atol=1e-5)


def test_engine_ray_without_ray_installed_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    copy_demo_images(tmp_path / "gallery", 1)
    args = ["index", str(tmp_path / "gallery"), "--index", str(tmp_path / "i"), *OPTIONS, "--engine", "ray"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output == "error: --engine ray needs Ray, which is not installed here: pip install -e '.[ray]'\n"
    assert not (tmp_path / "i").exists()


def test_ray_options_without_engine_ray_are_refused():
    with pytest.raises(SettingsError, match=r"^--ray-address and --workers are for --engine ray"):
        build_index(GALLERY, "unused", SETTINGS, workers=2)
    with pytest.raises(SettingsError, match=r"^unknown --engine 'spark': use one of local, ray$"):
        build_index(GALLERY, "unused", SETTINGS, engine="spark")
    with pytest.raises(SettingsError, match=r"^--workers 0 must be at least 1"):
        build_index(GALLERY, "unused", SETTINGS, engine="ray", workers=0)


@pytest.mark.parametrize(
    "nodes, workers, gpus, shape",
    [
        ([{"CPU": 2.0}], None, True, PoolShape(1, 1.8, 0.0, 2)),  # fractional: Ray keeps 0.2 CPUs free
        ([{"CPU": 2.0}], 2, True, PoolShape(2, 0.9, 0.0, 1)),
        ([{"CPU": 16.0}], None, True, PoolShape(4, 3.6, 0.0, 4)),
        ([{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}], None, True, PoolShape(2, 7.2, 1.0, 8)),
        ([{"CPU": 8.0, "GPU": 2.0}], None, False, PoolShape(2, 3.6, 0.0, 4)),  # --device cpu: CPU actors
        ([{"CPU": 8.0, "GPU": 1.0}], 4, True, PoolShape(4, 1.8, 0.25, 2)),  # GPUs shared
        ([{"CPU": 0.0}, {"CPU": 4.0}, {"CPU": 4.0}], 1, True, PoolShape(1, 3.6, 0.0, 4)),  # fits one node
    ],
)
def test_the_pool_is_sized_from_the_cluster_and_always_fits_it(nodes, workers, gpus, shape):
    assert pool_shape(nodes, workers, gpus) == shape
