"""Updating an index: new, changed, unchanged and gone images; remove; settings that cannot mix; rebuild."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import retrieval.sources.folder as reader
from retrieval import IndexSettings, build_index, index_info
from retrieval.cli.main import main
from retrieval.errors import StoreError
from retrieval.index.remove import remove_images
from retrieval.index.snapshot import IndexSnapshot
from retrieval.testing.rows import all_rows

from tests.conftest import GALLERY
from tests.conftest import RANDOM_WHOLE as WHOLE


@pytest.fixture()
def gallery(tmp_path):
    folder = tmp_path / "gallery"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        shutil.copy(GALLERY / f"scene_{i:03d}.jpg", folder / f"scene_{i}.jpg")
    shutil.copy(GALLERY / "scene_010.jpg", folder / "sub" / "deep.jpg")
    return folder


@pytest.fixture()
def counting(monkeypatch):
    """Counts of files read and decoded by the reader."""
    counts = {"read": 0, "decoded": 0}
    real_read, real_decode = reader.read_file, reader.decode_image_bytes

    def read(path):
        counts["read"] += 1
        return real_read(path)

    def decode(*args, **kwargs):
        counts["decoded"] += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(reader, "read_file", read)
    monkeypatch.setattr(reader, "decode_image_bytes", decode)
    return counts


def vectors_by_path(index) -> dict[str, np.ndarray]:
    snapshot = IndexSnapshot.load(index)
    table = all_rows(snapshot)
    return {
        table.image_paths[int(image)]: snapshot.vectors.reconstruct(np.array([i]))[0]
        for i, image in zip(table.object_ids, table.object_image)
    }


def test_unchanged_images_are_neither_read_nor_decoded(gallery, tmp_path, counting):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    assert counting == {"read": 5, "decoded": 5}
    summary = build_index(gallery, tmp_path / "index", progress=False)  # the index's own settings
    assert counting == {"read": 5, "decoded": 5}
    assert (summary.added, summary.updated, summary.unchanged, summary.images) == (0, 0, 5, 5)


def test_a_touched_file_is_hashed_not_decoded(gallery, tmp_path, counting):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    os.utime(gallery / "scene_1.jpg", ns=(1_000_000_000, 1_000_000_000))
    summary = build_index(gallery, tmp_path / "index", progress=False)
    assert counting == {"read": 6, "decoded": 5} and summary.unchanged == 5
    counting.update(read=0, decoded=0)
    build_index(gallery, tmp_path / "index", progress=False)
    assert counting == {"read": 0, "decoded": 0}  # the new mtime was recorded


def test_new_changed_and_gone_images(gallery, tmp_path):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    before = vectors_by_path(tmp_path / "index")
    Image.open(GALLERY / "scene_020.jpg").save(gallery / "scene_1.jpg")  # new content, same name
    shutil.copy(GALLERY / "scene_030.jpg", gallery / "sub" / "new.jpg")
    (gallery / "scene_2.jpg").unlink()
    summary = build_index(gallery, tmp_path / "index", progress=False)
    assert (summary.added, summary.updated, summary.unchanged, summary.removed) == (1, 1, 3, 0)
    assert summary.gone == ["scene_2.jpg"] and summary.images == 6  # kept without --prune
    after = vectors_by_path(tmp_path / "index")
    assert not np.allclose(after["scene_1.jpg"], before["scene_1.jpg"])
    np.testing.assert_array_equal(after["scene_0.jpg"], before["scene_0.jpg"])
    summary = build_index(gallery, tmp_path / "index", prune=True, progress=False)
    assert summary.removed == 1 and summary.images == 5 and "scene_2.jpg" not in vectors_by_path(tmp_path / "index")


def test_updates_end_with_what_a_fresh_build_makes(gallery, tmp_path):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    shutil.copy(GALLERY / "scene_030.jpg", gallery / "added.jpg")
    (gallery / "scene_3.jpg").unlink()
    build_index(gallery, tmp_path / "index", prune=True, progress=False)
    build_index(gallery, tmp_path / "fresh", WHOLE, progress=False)
    updated, fresh = vectors_by_path(tmp_path / "index"), vectors_by_path(tmp_path / "fresh")
    assert sorted(updated) == sorted(fresh)
    for path in fresh:
        np.testing.assert_allclose(updated[path], fresh[path], atol=1e-6)


def test_remove_files_and_folders(gallery, tmp_path, monkeypatch):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    monkeypatch.chdir(tmp_path)
    assert remove_images(tmp_path / "index", ["gallery/scene_0.jpg", "sub"]) == ["scene_0.jpg", "sub/deep.jpg"]
    assert sorted(vectors_by_path(tmp_path / "index")) == ["scene_1.jpg", "scene_2.jpg", "scene_3.jpg"]
    with pytest.raises(StoreError, match="nope.jpg is not in index .*; nothing was removed"):
        remove_images(tmp_path / "index", ["scene_1.jpg", "nope.jpg"])
    assert len(vectors_by_path(tmp_path / "index")) == 3
    result = CliRunner().invoke(main, ["remove", "--index", str(tmp_path / "index"), "scene_1.jpg"])
    assert result.exit_code == 0 and result.output == f"removed 1 image from {tmp_path / 'index'}\n"


def test_removing_the_gallery_folder_removes_every_image(gallery, tmp_path, monkeypatch):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    with pytest.raises(StoreError, match="an empty path names no image"):
        remove_images(tmp_path / "index", [""])
    monkeypatch.chdir(tmp_path)  # "." here is not the gallery: not in the index
    with pytest.raises(StoreError, match=r"^\. is not in index"):
        remove_images(tmp_path / "index", ["."])
    monkeypatch.chdir(gallery)  # "." inside the gallery is the gallery folder itself
    everything = sorted(vectors_by_path(tmp_path / "index"))
    assert len(everything) == 5 and remove_images(tmp_path / "index", ["."]) == everything
    assert vectors_by_path(tmp_path / "index") == {}
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    result = CliRunner().invoke(main, ["remove", "--index", str(tmp_path / "index"), str(gallery)])
    assert result.exit_code == 0 and result.output == f"removed 5 images from {tmp_path / 'index'}\n"
    assert vectors_by_path(tmp_path / "index") == {}


def test_settings_that_change_the_vectors_are_refused_unless_rebuild(gallery, tmp_path):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    store_before = IndexSnapshot.load(tmp_path / "index").store
    other = IndexSettings(embedder="roi", objects="whole", weights="random", min_size=320, max_size=533, device="cpu")
    with pytest.raises(StoreError) as error:
        build_index(gallery, tmp_path / "index", other, progress=False)
    assert "was built with other settings (embedder 'resnet50' → 'roi'; " in str(error.value)
    assert "add --rebuild to re-index everything" in str(error.value)
    summary = build_index(gallery, tmp_path / "index", other, rebuild=True, progress=False)
    assert summary.rebuilt and summary.added == 5
    snapshot = IndexSnapshot.load(tmp_path / "index")
    assert snapshot.manifest.embedder["name"] == "roi" and snapshot.vectors.dimension == 1024
    assert not store_before.exists()  # the old store is gone once the new one is active


def test_settings_that_do_not_change_the_vectors_are_accepted(gallery, tmp_path):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    summary = build_index(
        gallery,
        tmp_path / "index",
        IndexSettings(**{**WHOLE.to_dict(), "min_size": 320, "classes": ("cup",), "device": "auto"}),
        progress=False,
    )
    assert summary.unchanged == 5 and not summary.rebuilt


def test_other_weights_are_refused(gallery, tmp_path):
    import torch
    from torchvision.models import resnet50

    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    torch.save(resnet50(weights=None).state_dict(), tmp_path / "other.pth")
    with pytest.raises(StoreError, match="was built with other settings \\(weights 'random' → '.*other.pth'\\)"):
        build_index(
            gallery,
            tmp_path / "index",
            IndexSettings(**{**WHOLE.to_dict(), "weights": str(tmp_path / "other.pth")}),
            progress=False,
        )


def test_a_moved_gallery_is_refused_unless_rebuild(gallery, tmp_path):
    build_index(gallery, tmp_path / "index", WHOLE, progress=False)
    moved = tmp_path / "moved"
    shutil.copytree(gallery, moved)
    with pytest.raises(StoreError, match=f"gallery {gallery} → {moved}"):
        build_index(moved, tmp_path / "index", progress=False)
    assert build_index(moved, tmp_path / "index", rebuild=True, progress=False).rebuilt


def test_an_edited_annotation_re_indexes_only_its_image(gallery, tmp_path):
    coco = {
        "images": [{"id": i, "file_name": f"scene_{i}.jpg", "width": 640, "height": 480} for i in range(4)],
        "annotations": [{"image_id": i, "bbox": [10, 10, 100, 100], "category_id": 1} for i in range(4)],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(coco))
    settings = IndexSettings(embedder="resnet50", objects="annotations", annotations=str(path), weights="random")
    (gallery / "sub" / "deep.jpg").unlink()
    build_index(gallery, tmp_path / "index", settings, progress=False)
    coco["annotations"][2]["bbox"] = [50, 60, 200, 150]
    path.write_text(json.dumps(coco))
    summary = build_index(gallery, tmp_path / "index", progress=False)
    assert (summary.updated, summary.unchanged) == (1, 3)
    snapshot = IndexSnapshot.load(tmp_path / "index")
    table = all_rows(snapshot)
    assert [50, 60, 250, 210] in table.boxes.tolist()


def test_cli_update_uses_the_index_settings_for_options_left_out(gallery, tmp_path):
    runner = CliRunner()
    first = runner.invoke(
        main,
        [
            "index",
            str(gallery),
            "--index",
            str(tmp_path / "i"),
            "--embedder",
            "resnet50",
            "--objects",
            "whole",
            "--weights",
            "random",
            "--quiet",
        ],
    )
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["index", str(gallery), "--index", str(tmp_path / "i"), "--quiet"])
    assert again.exit_code == 0 and "0 new, 0 changed, 5 unchanged" in again.output
    refused = runner.invoke(
        main, ["index", str(gallery), "--index", str(tmp_path / "i"), "--embedder", "roi", "--quiet"]
    )
    assert refused.exit_code == 1 and refused.output.startswith("error: index ") and refused.output.count("\n") == 1
    assert index_info(tmp_path / "i")["embedder"] == "resnet50"
