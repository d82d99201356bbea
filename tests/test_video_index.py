"""Indexing video files: sampled frames as items with their times, near-duplicates passed over, bad files
reported, changes noticed per video, and a run killed midway through a long video resumed to the same end."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import retrieval.sources.folder as folder_source
from retrieval import IndexSettings, build_index, index_info
from retrieval.cli.main import main
from retrieval.index.snapshot import IndexSnapshot
from retrieval.testing.videos import truncate, write_frames, write_scene_video, write_still_video
from retrieval.testing.rows import all_rows

from tests.children import child_done, finish_child, kill_child, run_in_child, start_child
from tests.conftest import GALLERY

VIDEO_WHOLE = IndexSettings(
    embedder="efficientnet_lite0", objects="whole", weights="random", device="cpu", precision="fp32", video_min_change=0
)


def frames(index) -> dict[str, tuple[int, float]]:
    """Every indexed frame's key → (frame number, time), read from the committed metadata."""
    store = IndexSnapshot.load(index).store
    with closing(sqlite3.connect(f"file:{store / 'metadata.sqlite'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT key, frame, time FROM items WHERE kind = 'frame' AND status = 'indexed'")
        return {key: (number, round(seconds, 3)) for key, number, seconds in rows}


def content(index) -> dict[str, list]:
    """Every indexed item's key → its objects' boxes and vectors."""
    snapshot = IndexSnapshot.load(index)
    table = all_rows(snapshot)
    found: dict[str, list] = {key: [] for key in table.item_keys.values()}
    for row, object_id in enumerate(table.object_ids):
        vector = snapshot.vectors.reconstruct(np.array([object_id]))[0]
        found[table.item_keys[int(table.object_image[row])]].append((table.boxes[row].tolist(), vector))
    return found


@pytest.fixture()
def gallery(tmp_path) -> Path:
    """Two photos and a 10 s clip at 10 frames/s."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    for number in range(2):
        shutil.copy(GALLERY / f"scene_{number:03d}.jpg", folder / f"photo_{number}.jpg")
    write_scene_video(folder / "clip.mp4")
    return folder


def test_a_video_and_images_index_together_each_kept_frame_an_item_with_its_time(gallery, tmp_path):
    summary = build_index(gallery, tmp_path / "index", VIDEO_WHOLE, progress=False)
    assert (summary.images, summary.videos, summary.frames, summary.objects) == (2, 1, 10, 12)
    assert (summary.added, summary.frames_added, summary.skipped) == (3, 10, [])
    stored = frames(tmp_path / "index")
    assert stored == {f"clip.mp4#t={second}.000": (10 * second, float(second)) for second in range(10)}
    info = index_info(tmp_path / "index")
    assert (info["images"], info["videos"], info["frames"], info["objects"]) == (2, 1, 10, 12)
    snapshot = IndexSnapshot.load(tmp_path / "index")
    table = all_rows(snapshot)
    assert sorted({ref.video for ref in table.frames.values()}) == ["clip.mp4"]
    assert sorted(ref.position for ref in table.frames.values()) == list(range(10))


def test_another_sampling_rate_resamples_the_videos_alone(gallery, tmp_path):
    build_index(gallery, tmp_path / "index", VIDEO_WHOLE, progress=False)
    again = build_index(gallery, tmp_path / "index", replace(VIDEO_WHOLE, video_fps=2.5), progress=False)
    assert (again.unchanged, again.updated, again.frames, again.frames_added) == (2, 1, 25, 25)
    assert sorted(t for _, t in frames(tmp_path / "index").values()) == [round(n * 0.4, 3) for n in range(25)]


def test_near_duplicate_frames_are_passed_over(tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    write_still_video(gallery / "still.MOV", seconds=6)  # the extension in any case
    write_scene_video(gallery / "pan.mkv", seconds=6)
    default = replace(VIDEO_WHOLE, video_min_change=IndexSettings().video_min_change)
    build_index(gallery, tmp_path / "index", default, progress=False)
    times = {key: t for key, (_, t) in frames(tmp_path / "index").items()}
    assert [t for key, t in times.items() if key.startswith("still")] == [0.0]  # one frame for a still shot
    assert sorted(t for key, t in times.items() if key.startswith("pan")) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    every = build_index(gallery, tmp_path / "all", VIDEO_WHOLE, progress=False)
    assert every.frames == 12


def test_broken_videos_are_reported_not_fatal_and_a_cut_one_is_indexed_up_to_the_break(gallery, tmp_path):
    (gallery / "empty.mp4").write_bytes(b"")
    (gallery / "notes.mov").write_text("not a video at all\n")
    truncate(write_scene_video(gallery / "cut.avi", seed=4).path)  # AVI frames before the cut still decode
    truncate(write_scene_video(gallery / "cut.mp4", seed=5).path)  # an MP4's index is at its end: nothing decodes
    write_frames(gallery / "blank.avi", [], 10)  # a header, no frames
    write_frames(gallery / "blank.mp4", [], 10)  # not even a stream
    summary = build_index(gallery, tmp_path / "index", VIDEO_WHOLE, progress=False)
    reasons = dict(summary.skipped)
    assert reasons == {
        "blank.avi": "holds no frames (no frame could be decoded)",
        "blank.mp4": "holds no video stream",
        "empty.mp4": "the file is empty (0 bytes)",
        "notes.mov": "cannot be opened as a video (Invalid data found when processing input)",
        "cut.mp4": "cannot be opened as a video (Invalid data found when processing input)",
    }
    cut = {t for key, (_, t) in frames(tmp_path / "index").items() if key.startswith("cut.avi")}
    assert cut == {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}  # about half of its 100 frames survive the cut
    assert (summary.images, summary.videos, summary.frames) == (2, 2, 16)
    info = index_info(tmp_path / "index")
    [incomplete] = info["incomplete"]
    assert incomplete["path"] == "cut.avi"
    assert re.fullmatch(r"the file ends after 5\d of the 100 frames its header announces \(cut short\?\)",
                        incomplete["reason"])
    shown = CliRunner().invoke(main, ["info", "--index", str(tmp_path / "index")])
    assert shown.exit_code == 0, shown.output
    assert "videos     2 (16 frames)" in shown.output and "broken off 1 (indexed up to the break)" in shown.output
    assert "  notes.mov: cannot be opened as a video" in shown.output


def test_an_unchanged_video_is_not_opened_again_and_a_changed_one_is_indexed_again_whole(gallery, tmp_path, monkeypatch):
    build_index(gallery, tmp_path / "index", VIDEO_WHOLE, progress=False)
    opened = []
    real_open = folder_source.VideoFile
    monkeypatch.setattr(folder_source, "VideoFile", lambda *a: opened.append(a[0]) or real_open(*a))
    again = build_index(gallery, tmp_path / "index", progress=False)
    assert (again.unchanged, again.added, again.updated, opened) == (3, 0, 0, [])

    os.utime(gallery / "clip.mp4", ns=(time.time_ns(), time.time_ns()))  # touched, same bytes
    touched = build_index(gallery, tmp_path / "index", progress=False)
    assert (touched.unchanged, touched.frames_added, opened) == (3, 0, [])

    write_scene_video(gallery / "clip.mp4", seconds=4, seed=9)  # other content, and shorter
    changed = build_index(gallery, tmp_path / "index", progress=False)
    assert (changed.updated, changed.frames, changed.frames_added, len(opened)) == (1, 4, 4, 1)
    assert sorted(frames(tmp_path / "index")) == [f"clip.mp4#t={n}.000" for n in range(4)]


def test_a_gone_video_is_reported_once_pruned_whole_and_removable_by_path(gallery, tmp_path):
    index = tmp_path / "index"
    build_index(gallery, index, VIDEO_WHOLE, progress=False)
    removed = CliRunner().invoke(main, ["remove", "--index", str(index), "clip.mp4", "photo_0.jpg"])
    assert removed.exit_code == 0 and removed.output == f"removed 1 image and 1 video (10 frames) from {index}\n"
    assert (index_info(index)["videos"], index_info(index)["frames"]) == (0, 0)

    build_index(gallery, index, progress=False)
    (gallery / "clip.mp4").unlink()
    kept = build_index(gallery, index, progress=False)
    assert (kept.gone, kept.frames) == (["clip.mp4"], 10)
    pruned = build_index(gallery, index, prune=True, progress=False)
    assert (pruned.removed, pruned.videos, pruned.frames, pruned.images) == (1, 0, 0, 2)


def test_with_annotations_a_video_is_skipped_with_why(gallery, tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "photo_0.jpg", "width": 640, "height": 480}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    settings = replace(VIDEO_WHOLE, objects="annotations", annotations=str(tmp_path / "coco.json"))
    summary = build_index(gallery, tmp_path / "index", settings, progress=False)
    assert dict(summary.skipped)["clip.mp4"].startswith("a video file: --objects annotations gives boxes for images")


def test_the_progress_bar_counts_files_and_frames(gallery, tmp_path):
    result = CliRunner().invoke(
        main,
        ["index", str(gallery), "--index", str(tmp_path / "index"), "--embedder", "efficientnet_lite0", "--weights",
         "random", "--objects", "whole", "--device", "cpu", "--video-fps", "2", "--video-min-change", "0"],
    )
    assert result.exit_code == 0, result.output
    assert "3/3" in result.stderr and "file" in result.stderr and "frames=20" in result.stderr
    assert "indexed 2 images, 1 video (20 frames), 22 objects" in result.stdout
    assert "frames/s" in result.stdout


def test_bad_sampling_values_are_one_line_naming_the_option(gallery, tmp_path):
    for option, value in (("--video-fps", "0"), ("--video-min-change", "1.5")):
        result = CliRunner().invoke(main, ["index", str(gallery), "--index", str(tmp_path / "i"), option, value])
        assert result.exit_code != 0 and option in result.output and len(result.output.strip().splitlines()) == 1


def test_killed_midway_through_a_long_video_the_same_command_resumes_to_what_one_run_gives(tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    write_scene_video(gallery / "long.mp4", seconds=40, fps=10)
    shutil.copy(GALLERY / "scene_000.jpg", gallery / "photo.jpg")
    settings = replace(VIDEO_WHOLE, video_fps=2)
    index = tmp_path / "index"
    pid, pipe = start_child(build_index, gallery, index, settings, commit_seconds=0, progress=False)
    deadline = time.monotonic() + 240
    while not (index / "HEAD").exists() or len(frames(index)) < 20:
        assert time.monotonic() < deadline and not child_done(pipe), "the run ended before it could be killed"
        time.sleep(0.05)
    assert kill_child(pid, pipe)
    stopped_at = len(frames(index))
    assert 20 <= stopped_at < 80 and index_info(index)["videos"] == 0  # the video's own row is written last

    resumed = run_in_child(build_index, gallery, index, settings, progress=False)
    assert resumed.error is None, resumed.error
    assert resumed.value.frames_added == 80 - stopped_at  # frames already stored were not embedded again
    reference = run_in_child(build_index, gallery, tmp_path / "reference", settings, progress=False)
    assert reference.error is None, reference.error
    got, want = content(index), content(tmp_path / "reference")
    assert sorted(got) == sorted(want) and len(want) == 81
    for key, objects in want.items():
        assert [box for box, _ in got[key]] == [box for box, _ in objects]
        np.testing.assert_allclose(np.stack([v for _, v in got[key]]), np.stack([v for _, v in objects]), atol=1e-5)
    assert frames(index) == frames(tmp_path / "reference")


def test_memory_does_not_grow_with_the_length_of_a_video(tmp_path):
    peaks = []
    for seconds in (4, 40):
        gallery = tmp_path / f"gallery-{seconds}"
        gallery.mkdir()
        write_scene_video(gallery / "clip.mp4", seconds=seconds, fps=10)
        result = run_in_child(build_index, gallery, tmp_path / f"index-{seconds}", replace(VIDEO_WHOLE, video_fps=5),
                              progress=False)
        assert result.error is None and result.value.frames == 5 * seconds
        peaks.append(result.max_rss_bytes)
    assert peaks[1] - peaks[0] < 40 * 2**20, f"peak memory grew by {(peaks[1] - peaks[0]) / 2**20:.0f} MiB"


def test_export_writes_one_embedding_file_per_frame_and_names_frames_in_the_features(gallery, tmp_path):
    from retrieval.tools.export import export_index

    build_index(gallery, tmp_path / "index", VIDEO_WHOLE, progress=False)
    export_index(tmp_path / "index", "per-image", tmp_path / "per-image", progress=False)
    files = sorted(p.name for p in (tmp_path / "per-image" / "embeddings").iterdir())
    assert files == sorted([f"clip.mp4#t={n}.000.npy" for n in range(10)] + ["photo_0.jpg.npy", "photo_1.jpg.npy"])
    assert np.load(tmp_path / "per-image" / "embeddings" / "clip.mp4#t=3.000.npy").shape == (1, 1280)
    export_index(tmp_path / "index", "features", tmp_path / "features", progress=False)
    boxes = json.loads((tmp_path / "features" / "boxes.json").read_text())
    times = {entry["item"]: entry["time"] for entry in boxes}
    assert times["clip.mp4#t=7.000"] == 7.0 and times["photo_1.jpg"] is None
    assert {entry["image"] for entry in boxes} == {str(gallery / n) for n in ("clip.mp4", "photo_0.jpg", "photo_1.jpg")}


def test_a_video_over_the_pixel_limit_is_skipped_before_decoding(gallery, tmp_path):
    summary = build_index(gallery, tmp_path / "index", VIDEO_WHOLE, max_pixels=50_000, progress=False)
    assert dict(summary.skipped)["clip.mp4"] == (
        "frames of 320x240 pixels are more than --max-pixels 50,000; raise --max-pixels to index it"
    )
