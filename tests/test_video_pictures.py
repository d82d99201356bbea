"""Pictures of video frames: an indexed frame's pixels decoded from its video at its time, served by the API
by item id (as JPEG, with the frame's size and time in the detail), and drawn by ``query --save-vis``."""

import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from retrieval import IndexSettings, build_index
from retrieval.cli.main import main
from retrieval.images import load_image
from retrieval.index.pictures import item_rgb, item_size, item_time
from retrieval.index.snapshot import IndexSnapshot
from retrieval.server import ServerState, create_app
from retrieval.testing.videos import write_scene_video
from retrieval.text import clock
from retrieval.tools.visualize import TILE, Tile, render_results, results_picture
from retrieval.videos import VideoFile
from retrieval.testing.rows import all_rows

from tests.conftest import GALLERY

VIDEO_SETTINGS = IndexSettings(
    embedder="efficientnet_lite0", objects="whole", weights="random", device="cpu", video_min_change=0
)
"""Whole-frame objects, every sampled frame kept (1 a second): a 10 s clip gives frames at 0, 1, ..., 9 s."""


def video_gallery(folder: Path) -> Path:
    """``folder`` holding ``clip.mp4`` (10 s at 10 fps, 320x240, the demo object from 4 s on), ``photo.jpg``
    (a 640x480 demo scene) and ``object.png`` outside it: the object as it appears in the clip (a query)."""
    gallery = folder / "gallery"
    gallery.mkdir(parents=True)
    scene = write_scene_video(gallery / "clip.mp4")
    shutil.copy(GALLERY / "scene_000.jpg", gallery / "photo.jpg")
    Image.fromarray(scene.sprite).save(folder / "object.png")
    return gallery


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-pictures")
    gallery = video_gallery(root)
    build_index(gallery, root / "index", VIDEO_SETTINGS, progress=False)
    return root, gallery, IndexSnapshot.load(root / "index")


@pytest.fixture(scope="module")
def client(indexed):
    return TestClient(create_app(ServerState(indexed[0] / "index", device="cpu")))


def frame_at(snapshot: IndexSnapshot, seconds: float) -> int:
    """The item id of the indexed frame at ``seconds``."""
    return next(i for i, frame in all_rows(snapshot).frames.items() if abs(frame.time - seconds) < 0.01)


def test_item_rgb_of_a_frame_is_its_video_decoded_at_its_time(indexed):
    _, gallery, snapshot = indexed
    table = all_rows(snapshot)
    assert sorted(round(frame.time, 3) for frame in table.frames.values()) == [float(s) for s in range(10)]
    early, late = frame_at(snapshot, 2.0), frame_at(snapshot, 5.0)
    with VideoFile(gallery / "clip.mp4") as video:
        expected = {early: video.frame_at(2.0).rgb, late: video.frame_at(5.0).rgb}
    for item_id, rgb in expected.items():
        assert item_rgb(snapshot, item_id).shape == (240, 320, 3)
        np.testing.assert_array_equal(item_rgb(snapshot, item_id), rgb)
        assert item_size(snapshot, item_id) == (320, 240)
    assert np.abs(item_rgb(snapshot, early).astype(int) - item_rgb(snapshot, late)).mean() > 10
    photo = next(i for i, path in table.image_paths.items() if path == "photo.jpg")
    np.testing.assert_array_equal(item_rgb(snapshot, photo), load_image(gallery / "photo.jpg").rgb)
    assert (item_size(snapshot, photo), item_time(snapshot, photo), item_time(snapshot, late)) == (
        (640, 480),
        None,
        5.0,
    )


def test_the_listing_and_the_detail_say_which_items_are_frames(client, indexed):
    snapshot = indexed[2]
    listing = client.get("/api/images", params={"limit": 1000}).json()
    assert listing["total"] == 11 and [i["kind"] for i in listing["images"]].count("frame") == 10
    photo = next(i for i in listing["images"] if i["kind"] == "image")
    assert (photo["path"], photo["video"], photo["frame"], photo["time"]) == ("photo.jpg", None, None, None)
    detail = client.get(f"/api/images/{frame_at(snapshot, 5.0)}").json()
    assert (detail["kind"], detail["path"], detail["video"], detail["item"]) == (
        "frame",
        *["clip.mp4"] * 2,
        "clip.mp4#t=5.000",
    )
    assert (detail["frame"], detail["time"], detail["width"], detail["height"]) == (50, 5.0, 320, 240)
    assert len(detail["boxes"]) == 1 and detail["boxes"][0]["box"] == [0.0, 0.0, 320.0, 240.0]


def test_a_frame_picture_and_thumbnail_are_jpegs_of_that_frame(client, indexed):
    snapshot = indexed[2]
    item_id = frame_at(snapshot, 5.0)
    for route in ("picture", "thumbnail"):
        answer = client.get(f"/api/images/{item_id}/{route}")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        served = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
        assert served.shape == (240, 320, 3)  # a thumbnail's longest side is 320: this frame's already
        difference = np.abs(served.astype(int) - item_rgb(snapshot, item_id))
        assert difference.mean() < 4, route  # JPEG quality 90
        other = np.abs(served.astype(int) - item_rgb(snapshot, frame_at(snapshot, 2.0)))
        assert other.mean() > 10, route
    for route in ("/api/images/99999/picture", "/api/images/99999/thumbnail", "/api/images/99999"):
        answer = client.get(route)
        assert answer.status_code == 404 and answer.json() == {"detail": "image 99999 is not an indexed gallery image"}


def test_a_frame_object_queries_from_its_frame(client, indexed):
    snapshot = indexed[2]
    table = all_rows(snapshot)
    item_id = frame_at(snapshot, 5.0)
    object_id = int(table.object_ids[np.flatnonzero(table.object_image == item_id)[0]])
    similar = client.get(f"/api/objects/{object_id}/similar", params={"top_k": 3, "group": "object"}).json()
    first = similar["results"][0]
    assert (first["object_id"], first["image_id"], first["width"], first["height"]) == (object_id, item_id, 320, 240)
    assert first["picture"] == f"/api/images/{item_id}/picture"
    answer = client.post("/api/query", data={"image_id": str(item_id), "top_k": "1", "group": "object"}).json()
    assert answer["results"][0]["object_id"] == object_id


def test_a_video_changed_or_gone_since_indexing_is_answered_as_a_broken_image_is(tmp_path):
    gallery = video_gallery(tmp_path)
    build_index(gallery, tmp_path / "index", VIDEO_SETTINGS, progress=False)
    snapshot = IndexSnapshot.load(tmp_path / "index")
    table = all_rows(snapshot)
    client = TestClient(create_app(ServerState(tmp_path / "index", device="cpu")))
    frame, photo = frame_at(snapshot, 5.0), next(i for i, p in table.image_paths.items() if p == "photo.jpg")
    (gallery / "clip.mp4").write_text("not a video any more")
    (gallery / "photo.jpg").write_text("not a photo any more")
    for route in ("picture", "thumbnail", ""):
        broken_video, broken_photo = (client.get(f"/api/images/{i}/{route}".rstrip("/")) for i in (frame, photo))
        assert broken_video.status_code == broken_photo.status_code == 400, route
        assert broken_video.json()["detail"].startswith(
            f"{gallery.resolve() / 'clip.mp4'}: cannot be opened as a video"
        )
    (gallery / "clip.mp4").unlink()
    (gallery / "photo.jpg").unlink()
    for route in ("picture", ""):
        gone_video, gone_photo = (client.get(f"/api/images/{i}/{route}".rstrip("/")) for i in (frame, photo))
        assert gone_video.status_code == gone_photo.status_code == 400, route
        assert gone_video.json()["detail"].endswith("clip.mp4: cannot be read (No such file or directory)")


def test_results_picture_draws_a_frame_result_from_its_video_with_its_time(indexed):
    _, gallery, snapshot = indexed
    video, query = str(gallery / "clip.mp4"), np.zeros((50, 60, 3), np.uint8)
    found = [
        SimpleNamespace(rank=1, score=0.9, image=video, box=[10, 20, 200, 220], label=None, video=video, time=5.0),
        SimpleNamespace(
            rank=2, score=0.8, image=str(gallery / "photo.jpg"), box=[0, 0, 64, 48], label="cup", time=None
        ),
    ]
    with VideoFile(video) as clip:
        frame = clip.frame_at(5.0).rgb
    expected = render_results(
        Tile(query, (0, 0, 60, 50), "query"),
        [
            Tile(frame, [10, 20, 200, 220], "#1 0.900 00:05.0"),
            Tile(load_image(gallery / "photo.jpg").rgb, [0, 0, 64, 48], "#2 0.800 cup"),
        ],
    )
    np.testing.assert_array_equal(results_picture(query, None, found), expected)
    found[0].time = 2.0
    assert not np.array_equal(results_picture(query, None, found), expected)
    assert (clock(5.0), clock(64.54), clock(3599.96)) == ("00:05.0", "01:04.5", "60:00.0")


def test_save_vis_draws_the_frames_a_query_finds(indexed, tmp_path):
    """Needs the frame fields of ``SearchResult`` (``video``, ``time``) of the result contract."""
    root = indexed[0]
    picture = tmp_path / "found.png"
    command = ["query", root / "object.png", "--index", root / "index", "--top-k", "3", "--json", "--save-vis", picture]
    run = CliRunner().invoke(main, [str(part) for part in command])
    assert run.exit_code == 0, run.output
    found = json.loads(run.stdout)["results"]
    assert found[0]["time"] is not None and f"picture written to {picture}" in run.stderr
    assert Image.open(picture).size == (2 * TILE + len(found) * TILE, 2 * (TILE + 26))
