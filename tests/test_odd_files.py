"""A folder of broken and odd files indexes every readable image and reports every other one."""

import sqlite3

import pytest

from retrieval import IndexSettings, build_index, index_info

from .conftest import SMALL_MAX_SIZE, SMALL_MIN_SIZE
from .odd_files import READABLE, UNREADABLE, make_odd_gallery, write_yolo_labels

MODES = {
    "detect-roi": IndexSettings(
        embedder="roi",
        objects="detect",
        weights="random",
        score_threshold=0.0,
        max_objects=2,
        min_size=SMALL_MIN_SIZE,
        max_size=SMALL_MAX_SIZE,
        device="cpu",
    ),
    "whole-resnet50": IndexSettings(embedder="resnet50", objects="whole", weights="random", device="cpu"),
    "annotations-resnet50": "labels",
}


@pytest.fixture(scope="module")
def odd_gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd") / "gallery"
    return folder, make_odd_gallery(folder)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_readable_image_is_indexed_and_every_other_reported(odd_gallery, tmp_path, mode):
    folder, expected = odd_gallery
    settings = MODES[mode]
    if settings == "labels":
        labels = write_yolo_labels(expected, tmp_path / "labels")
        settings = IndexSettings(
            embedder="resnet50", objects="annotations", annotations=str(labels), weights="random", device="cpu"
        )
    summary = build_index(folder, tmp_path / "index", settings, progress=False)
    readable = {name for name, outcome in expected.items() if outcome == READABLE}
    unreadable = {name for name, outcome in expected.items() if outcome == UNREADABLE}
    skipped = dict(summary.skipped)
    assert set(skipped) == unreadable
    assert summary.images == len(readable)
    assert "empty file (0 bytes)" in skipped["empty.jpg"]
    assert "not an image file Pillow can read" in skipped["text.jpg"]
    assert "broken image data" in skipped["truncated.jpg"]
    assert "Too many levels of symbolic links" in skipped["loop.jpg"]
    assert "already walked" in skipped["nested/back-to-top"]

    info = index_info(tmp_path / "index")
    assert info["images"] == len(readable)
    assert {entry["path"] for entry in info["skipped"]} == unreadable
    with sqlite3.connect(tmp_path / "index" / "metadata.sqlite") as db:
        indexed = dict(
            db.execute("SELECT path, width || 'x' || height FROM images WHERE status = 'indexed'").fetchall()
        )
    assert set(indexed) == readable
    assert indexed["rotated.jpg"] == "96x200"  # stored 200x96, EXIF orientation 6 turns it
    assert indexed["tiny.png"] == "1x1"
    per_image = 2 if mode == "detect-roi" else 1
    assert info["objects"] == per_image * len(readable)
