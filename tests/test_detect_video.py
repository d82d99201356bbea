"""``retrieval detect VIDEO_OR_STREAM``: annotated video and per-frame detections of a file, a URL or a camera."""

import functools
import http.server
import json
import re
import shutil
import threading

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from retrieval.cli.main import main
from retrieval.errors import SettingsError
from retrieval.models import FasterRCNNModel
from retrieval.testing.videos import truncate, write_scene_video, write_still_video
from retrieval.tools import detect_video as detect_video_module
from retrieval.tools.detect import DetectSettings
from retrieval.tools.detect_video import VideoOptions, detect_video
from retrieval.tools.streams import source_kind, stream_input
from retrieval.videos import VideoError

from tests.conftest import GALLERY

FAST = ["--detector", "mobilenet_v3_large_320_fpn", "--min-size", "160", "--max-size", "240", "--weights", "random"]
KEEP_TWO = ["--score-threshold", "0", "--max-objects", "2"]
SETTINGS = DetectSettings(
    detector="mobilenet_v3_large_320_fpn",
    weights="random",
    min_size=160,
    max_size=240,
    score_threshold=0.0,
    max_objects=2,
    device="cpu",
)
SUMMARY = re.compile(
    r"read (\d+) frames, detected on (\d+), (\d+) objects; ([\d.]+) frames/s detector only, "
    r"([\d.]+) frames/s end to end"
)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """2 s at 10 fps, 320x240."""
    return write_scene_video(tmp_path_factory.mktemp("videos") / "scene.mp4", seconds=2.0, fps=10.0, enters_at=1.0)


def read_video(path):
    """``(frames as (H, W, 3) uint8 BGR, fps)`` of the whole file, read back with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def test_detect_on_a_video_draws_every_frame_and_records_detections_every_third(tmp_path, scene):
    result = cli("detect", scene.path, "--out", tmp_path / "out", *FAST, *KEEP_TWO, "--every", "3", "--quiet")
    assert result.exit_code == 0, result.output
    read, detected, objects, detector_fps, overall_fps = SUMMARY.search(result.output).groups()
    assert (int(read), int(detected), int(objects)) == (20, 7, 14)  # frames 0, 3, ..., 18; two objects each
    assert float(detector_fps) > 0 and float(overall_fps) > 0
    frames, fps = read_video(tmp_path / "out/annotated.mp4")
    original, _ = read_video(scene.path)
    assert len(frames) == 20 and fps == 10.0 and frames[0].shape == (240, 320, 3)
    for drawn, plain in zip(frames, original):  # boxes (the last detection's) and the rate drawn on every frame
        assert np.abs(drawn.astype(np.int16) - plain).max() > 100
    document = json.loads((tmp_path / "out/detections.json").read_text())
    entries = document["frames"]
    assert [entry["frame"] for entry in entries] == list(range(20))
    assert max(abs(entry["time"] - entry["frame"] / 10.0) for entry in entries) < 0.001
    assert [i for i, entry in enumerate(entries) if entry["detected"]] == [0, 3, 6, 9, 12, 15, 18]
    for entry in entries:
        assert len(entry["detections"]) == (2 if entry["detected"] else 0)
        for detection in entry["detections"]:
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240 and 0 <= detection["score"] <= 1
            assert isinstance(detection["label"], str)
    info, summary = document["info"], document["summary"]
    assert (info["kind"], info["fps"], info["width"], info["height"], info["frames"]) == ("file", 10.0, 320, 240, 20)
    assert info["source"] == str(scene.path) and info["every"] == 3
    assert info["detector"]["architecture"] == "mobilenet_v3_large_320_fpn" and info["detector"]["source"] == "random"
    assert summary["complete"] and summary["stopped"] == "end" and summary["broke_off"] is None
    assert (summary["frames_read"], summary["frames_detected"], summary["detections"]) == (20, 7, 14)
    # the JSON keeps 3 decimals and the line shows 2: the same rate within their rounding
    assert abs(summary["end_to_end_fps"] - float(overall_fps)) <= 0.0051


@pytest.mark.parametrize(
    "option, value, frames, said", [("--max-frames", 5, 5, "stopped by --max-frames 5"), ("--duration", 0.8, 8, "")]
)
def test_max_frames_and_duration_stop_the_video_early(tmp_path, scene, option, value, frames, said):
    result = cli("detect", scene.path, "--out", tmp_path / "out", *FAST, option, value, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"read {frames} frames, detected on {frames}," in result.output and said in result.output
    assert len(read_video(tmp_path / "out/annotated.mp4")[0]) == frames
    document = json.loads((tmp_path / "out/detections.json").read_text())
    assert len(document["frames"]) == frames and document["summary"]["stopped"] == option


def test_a_truncated_video_is_detected_up_to_its_break_and_said_to_end_early(tmp_path):
    video = truncate(write_scene_video(tmp_path / "cut.avi", seconds=3.0).path, 0.5)
    result = cli("detect", video, "--out", tmp_path / "out", *FAST, "--quiet")
    assert result.exit_code == 0, result.output
    read = int(SUMMARY.search(result.output).group(1))
    assert 5 <= read < 30
    assert "the video ended early: the file ends after" in result.output
    assert len(read_video(tmp_path / "out/annotated.mp4")[0]) == read
    document = json.loads((tmp_path / "out/detections.json").read_text())
    assert len(document["frames"]) == read and "cut short" in document["summary"]["broke_off"]


def make_bad_input(tmp_path, kind):
    """The input arguments of one bad case."""
    if kind == "empty":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return [tmp_path / "empty.mp4"]
    if kind == "text":
        (tmp_path / "notes.mov").write_text("these are notes, not a video\n")
        return [tmp_path / "notes.mov"]
    if kind == "missing":
        return [tmp_path / "missing.mp4"]
    if kind == "mixed":
        return [write_still_video(tmp_path / "still.mp4", seconds=0.5), GALLERY / "scene_000.jpg"]
    if kind == "two videos":
        return [write_still_video(tmp_path / "a.mp4", seconds=0.5), write_still_video(tmp_path / "b.mkv", seconds=0.5)]
    return [{"camera": "99", "url": "rtsp://127.0.0.1:9/live"}[kind]]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", r"DIR/empty\.mp4: the file is empty \(0 bytes\)"),
        ("text", r"DIR/notes\.mov: cannot be opened as a video \(.+\)"),
        ("missing", r"DIR/missing\.mp4: no such file; give a video file, a stream URL .* or a camera index"),
        ("camera", r"camera 99 cannot be opened; check that it is connected and free, or give another index"),
        ("url", r"rtsp://127\.0\.0\.1:9/live: cannot connect or no video there; check the address .*"),
        ("mixed", r"DIR/still\.mp4 is a video, .* given with 1 other inputs: detect one video per command .*"),
        ("two videos", r"DIR/a\.mp4 is a video, .* given with 1 other inputs: detect one video per command .*"),
    ],
)
def test_a_video_that_cannot_be_read_or_mixed_inputs_is_one_line_and_nothing_is_loaded(
    tmp_path, monkeypatch, kind, message
):
    monkeypatch.setattr(FasterRCNNModel, "__init__", lambda *a, **k: pytest.fail("the detector was built"))
    result = cli("detect", *make_bad_input(tmp_path, kind), "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    expected = message.replace("DIR/", re.escape(f"{tmp_path}/"))
    assert re.fullmatch(f"error: {expected}\n", result.output), result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--every", "0"], "error: --every 0 must be at least 1\n"),
        (["--max-frames", "0"], "error: --max-frames 0 must be at least 1\n"),
        (["--duration", "-1"], "error: --duration -1 must be more than 0\n"),
    ],
)
def test_video_options_out_of_range_are_one_line(tmp_path, scene, args, message):
    result = cli("detect", scene.path, "--out", tmp_path / "out", *FAST, *args)
    assert result.exit_code == 1 and result.output == message


def test_video_options_with_images_are_refused(tmp_path):
    result = cli("detect", GALLERY / "scene_000.jpg", "--out", tmp_path / "out", *FAST, "--every", "2")
    assert result.exit_code == 1
    assert (
        result.output == "error: --every, --max-frames and --duration apply to a video: give one video, URL or camera\n"
    )


def test_a_video_inside_a_folder_is_skipped_with_how_to_detect_it(tmp_path):
    folder = tmp_path / "photos"
    (folder / "clips").mkdir(parents=True)
    shutil.copy(GALLERY / "scene_000.jpg", folder)
    write_still_video(folder / "clips" / "still.MP4", seconds=0.5)
    result = cli("detect", folder, "--out", tmp_path / "out", *FAST, "--quiet")
    assert result.exit_code == 0, result.output
    assert "in 1 image;" in result.output and "skipped 1 file:" in result.output
    assert "clips/still.MP4: a video file: detect it on its own: retrieval detect FILE --out DIR" in result.output


def test_ctrl_c_finishes_both_outputs(tmp_path, scene, monkeypatch):
    detect = FasterRCNNModel.detect
    calls = []

    def interrupted_on_the_fifth_frame(self, images, with_vectors):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return detect(self, images, with_vectors)

    monkeypatch.setattr(FasterRCNNModel, "detect", interrupted_on_the_fifth_frame)
    result = cli("detect", scene.path, "--out", tmp_path / "out", *FAST, "--quiet")
    assert result.exit_code == 0, result.output
    assert "read 4 frames, detected on 4," in result.output and "stopped by Ctrl-C" in result.output
    assert len(read_video(tmp_path / "out/annotated.mp4")[0]) == 4
    document = json.loads((tmp_path / "out/detections.json").read_text())
    assert len(document["frames"]) == 4 and document["summary"]["stopped"] == "Ctrl-C"
    assert document["summary"]["complete"]


def test_detections_json_is_saved_as_the_video_runs(tmp_path, scene, monkeypatch):
    saves = []
    save = detect_video_module.VideoOutputs.save

    def recorded(self, summary, complete):
        save(self, summary, complete)
        document = json.loads(self.results_path.read_text())  # whole at every save
        saves.append((len(document["frames"]), document["summary"]["complete"]))

    monkeypatch.setattr(detect_video_module, "SAVE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(detect_video_module, "SAVE_COST_FACTOR", 0)  # however long a save took on this machine
    monkeypatch.setattr(detect_video_module.VideoOutputs, "save", recorded)
    detect_video(scene.path, tmp_path / "out", SETTINGS, VideoOptions(max_frames=3), progress=False)
    assert saves == [(1, False), (2, False), (3, False), (3, True)]


def test_python_api_on_a_file_returns_the_counts_and_rates(tmp_path, scene):
    summary = detect_video(scene.path, tmp_path / "out", SETTINGS, VideoOptions(every=4), progress=False)
    assert (summary.kind, summary.frames_read, summary.frames_detected, summary.detections) == ("file", 20, 5, 10)
    assert summary.stopped == "end" and summary.broke_off is None
    assert 0 < summary.detector_seconds < summary.seconds  # the loop also decodes, draws and writes
    assert summary.detector_fps == pytest.approx(5 / summary.detector_seconds)
    assert summary.end_to_end_fps == pytest.approx(20 / summary.seconds)
    assert summary.video == tmp_path / "out/annotated.mp4" and summary.results == tmp_path / "out/detections.json"


def test_python_api_on_an_http_stream_reads_it_with_opencv(tmp_path, scene):
    served = tmp_path / "served"
    served.mkdir()
    write_scene_video(served / "live.avi", seconds=1.5, fps=10.0)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.avi"
    try:
        summary = detect_video(url, tmp_path / "out", SETTINGS, VideoOptions(every=5), progress=False)
    finally:
        server.shutdown()
    assert (summary.kind, summary.frames_read, summary.frames_detected) == ("url", 15, 3)
    document = json.loads(summary.results.read_text())
    assert document["info"]["source"] == url and document["info"]["fps"] == 10.0
    assert max(abs(entry["time"] - entry["frame"] / 10.0) for entry in document["frames"]) < 0.001
    assert len(read_video(summary.video)[0]) == 15


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_python_api_refuses_a_camera_that_is_not_there(tmp_path):
    with pytest.raises(VideoError, match="^camera 42 cannot be opened;"):
        detect_video("42", tmp_path / "out", SETTINGS)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "given, kind",
    [
        ("rtsp://cam.local/live", "url"),
        ("RTSPS://cam.local:322/x", "url"),
        ("http://host/video.mjpg", "url"),
        ("https://host/stream", "url"),
        ("0", "camera"),
        ("12", "camera"),
        ("-1", None),
        ("1.5", None),
        ("clip.MOV", "file"),
        ("a/b/clip.webm", "file"),
        ("photo.jpg", None),
        ("ftp://host/clip", None),
        ("photos", None),
    ],
)
def test_inputs_are_told_apart_as_url_camera_video_file_or_images(given, kind):
    assert source_kind(given) == kind


def test_a_number_that_names_an_existing_folder_is_a_folder_not_a_camera(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "0").mkdir()
    (tmp_path / "clip.mp4").mkdir()  # a folder named like a video is a folder
    assert source_kind("0") is None and source_kind("clip.mp4") is None
    assert stream_input(["0", "clip.mp4"]) is None
    assert stream_input(["1"]) == "1"
    with pytest.raises(SettingsError, match="^1 is a video, a stream or a camera given with 1 other inputs"):
        stream_input(["1", "photo.jpg"])


@pytest.mark.parametrize(
    "given, built",
    [
        (["--detector", "mobilenet_v3_large_320_fpn"], (320, 640)),  # its own input size when none is given
        (["--detector", "mobilenet_v3_large_fpn"], (800, 1333)),
        (["--detector", "mobilenet_v3_large_320_fpn", "--min-size", "400"], (400, 1333)),  # as given
    ],
)
def test_detect_runs_a_detector_at_its_own_input_size_unless_told(tmp_path, scene, monkeypatch, given, built):
    sizes = []

    def build(self):
        sizes.append((self.min_size, self.max_size))
        raise SettingsError("built")

    monkeypatch.setattr(DetectSettings, "build", build)
    result = cli("detect", scene.path, "--out", tmp_path / "out", "--weights", "random", *given, "--quiet")
    assert result.exit_code == 1 and "built" in result.output and sizes == [built]
