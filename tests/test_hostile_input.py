"""A corpus of hostile files: every readable image is indexed in every object mode, every other file
is skipped with its reason, and memory stays bounded (the pixel limit refuses bombs before decoding)."""

import resource
import shutil
import sqlite3
from contextlib import closing

import pytest

from retrieval import IndexSettings, build_index, index_info
from retrieval.errors import AnnotationsError
from retrieval.index.snapshot import IndexSnapshot
from retrieval.testing.rows import all_rows

from tests.children import run_in_child, shared_folder
from tests.conftest import RANDOM_WHOLE, random_detect
from tests.hostile_corpus import make_corpus, write_yolo_labels

DECODED_BOMB_BYTES = 30000 * 30000 * 3


@pytest.fixture(scope="module")
def corpus():
    folder = shared_folder()
    expected = make_corpus(folder / "gallery")
    labels = write_yolo_labels(expected, folder / "labels")
    yield folder, expected, labels
    (folder / "gallery" / "unreadable.jpg").chmod(0o644)
    shutil.rmtree(folder)


def settings_for(mode: str, labels) -> IndexSettings:
    if mode == "detect":
        return random_detect(max_objects=2)
    if mode == "annotations":
        return IndexSettings(**{**RANDOM_WHOLE.to_dict(), "objects": "annotations", "annotations": str(labels)})
    return RANDOM_WHOLE


@pytest.mark.parametrize("mode", ["detect", "whole", "annotations"])
def test_readable_images_are_indexed_and_every_other_file_is_reported(corpus, mode):
    folder, expected, labels = corpus
    index = folder / f"index-{mode}"
    parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # As an unprivileged user, so that the unreadable file is unreadable even when the tests run as root.
    result = run_in_child(
        build_index, folder / "gallery", index, settings_for(mode, labels), progress=False, drop_privileges=True
    )
    assert result.error is None, result.error
    summary = result.value
    skipped = dict(summary.skipped)
    should_skip = {name for name, e in expected.items() if e.outcome == "skipped"}
    assert set(skipped) == should_skip
    for name in should_skip:
        assert expected[name].reason in skipped[name], (name, skipped[name])
    readable = {name: e for name, e in expected.items() if e.outcome == "indexed"}
    assert summary.images == len(readable) and summary.added == len(readable)

    snapshot = IndexSnapshot.load(index)
    table = all_rows(snapshot)
    assert set(table.image_paths.values()) == set(readable)
    with closing(sqlite3.connect(snapshot.store / "metadata.sqlite")) as db:
        sizes = {
            path: (w, h) for path, w, h in db.execute("SELECT path, width, height FROM items WHERE status = 'indexed'")
        }
    assert sizes == {name: e.size for name, e in readable.items()}
    if mode == "detect":  # 2 per image, but boxes that fall off a 3-pixel-high image are dropped
        assert 2 * (len(readable) - 1) <= summary.objects <= 2 * len(readable)
    else:
        assert summary.objects == len(readable)
    # The bomb's 2.7 GB were never allocated: the child's peak stayed far below that.
    assert result.max_rss_bytes < parent_rss + DECODED_BOMB_BYTES / 2


def test_the_pixel_limit_is_configurable(corpus, tmp_path):
    folder, expected, _ = corpus
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(folder / "gallery" / "wide.png", gallery)
    shutil.copy(folder / "gallery" / "good.jpg", gallery)
    summary = build_index(gallery, tmp_path / "index", settings_for("whole", None), max_pixels=10_000, progress=False)
    assert summary.images == 1
    assert summary.skipped == [
        (
            "good.jpg",
            "160x120 pixels is more than the limit of 10,000; raise the pixel limit (--max-pixels) to index it",
        )
    ]


def test_a_file_deleted_during_the_run_is_skipped_and_the_rest_indexed(corpus, tmp_path, monkeypatch):
    folder, _, _ = corpus
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(folder / "gallery" / "good.jpg", gallery / name)
    import retrieval.sources.folder as reader

    real_stat = reader.stat_file

    def stat_then_delete_the_next(path):
        if path.name == "a.jpg":
            (gallery / "b.jpg").unlink()  # listed already, gone before it is read
        return real_stat(path)

    monkeypatch.setattr(reader, "stat_file", stat_then_delete_the_next)
    summary = build_index(gallery, tmp_path / "index", settings_for("whole", None), progress=False)
    assert summary.images == 2
    assert summary.skipped == [("b.jpg", "cannot be read (No such file or directory)")]


def test_annotations_naming_images_outside_the_gallery_are_an_error(corpus, tmp_path):
    folder, expected, labels = corpus
    (labels / "exif" / "orientation_9.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    try:
        with pytest.raises(AnnotationsError) as error:
            build_index(folder / "gallery", tmp_path / "index", settings_for("annotations", labels), progress=False)
    finally:
        (labels / "exif" / "orientation_9.txt").unlink()
    assert f"{labels}: 1 annotated images are not in the gallery" in str(error.value)
    assert f"{labels / 'exif' / 'orientation_9.txt'}" in str(error.value)
    assert not (tmp_path / "index").exists()
    assert index_info  # the public API stays importable beside build_index
