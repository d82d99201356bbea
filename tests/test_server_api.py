"""The HTTP API in process (FastAPI's TestClient): answers, limits, errors, and that nothing outside the
gallery is ever served. The real server on loopback is in test_server_live.py, the page in test_browser.py."""

import io
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from retrieval import IndexSettings, Searcher, build_index
from retrieval.errors import SettingsError
from retrieval.server import ServerLimits, ServerState, create_app
from retrieval.server.routes.service import random_weights

from tests.conftest import ANNOTATED_RESNET, GALLERY, QUERY, random_detect

QUERY_IMAGE = QUERY / "stripes-box-a0.jpg"
QUERY_BOX = (4, 153, 107, 270)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A gallery of the demo scenes plus a symlink to an image outside it, indexed with annotation boxes."""
    root = tmp_path_factory.mktemp("served")
    gallery, outside = root / "gallery", root / "outside"
    shutil.copytree(GALLERY, gallery)
    outside.mkdir()
    shutil.copy(GALLERY / "scene_000.jpg", outside / "secret.jpg")
    os.symlink(outside / "secret.jpg", gallery / "linked.jpg")
    settings = IndexSettings(**{**ANNOTATED_RESNET.to_dict(), "annotations": str(gallery / "annotations.json")})
    build_index(gallery, root / "index", settings, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def client(served):
    state = ServerState(served, device="cpu", limits=ServerLimits(max_upload_bytes=2_000_000, max_pixels=4_000_000))
    return TestClient(create_app(state))


def upload(path=QUERY_IMAGE, **form):
    return {
        "files": {"image": (path.name, path.read_bytes(), "image/jpeg")},
        "data": {k: str(v) for k, v in form.items()},
    }


def test_health_info_and_image_listing(client, served):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["images"] == 41 and health["objects"] == 120
    info = client.get("/api/info").json()
    assert info["embedder"] == "resnet50" and info["dimension"] == 2048 and info["detector"] is False
    assert info["random_weights"] == ["embedder"]  # the page shows a notice for these
    paths = [image["path"] for image in client.get("/api/images", params={"limit": 1000}).json()["images"]]
    assert paths == sorted(paths) and paths[0] == "linked.jpg" and len(paths) == 41
    listing = client.get("/api/images", params={"limit": 5, "offset": 2}).json()
    assert listing["total"] == 41 and [image["path"] for image in listing["images"]] == paths[2:7]
    detail = client.get(f"/api/images/{listing['images'][0]['image_id']}").json()
    assert detail["path"] == listing["images"][0]["path"] and (detail["width"], detail["height"]) == (640, 480)
    assert len(detail["boxes"]) == 3 and all(len(b["box"]) == 4 for b in detail["boxes"])


def test_random_weights_lists_only_the_models_with_seeded_random_weights():
    def snapshot(embedder_source, detector_source):
        detector = None if detector_source is None else {"weights": {"source": detector_source}}
        embedder = {"weights": {"source": embedder_source}}
        return SimpleNamespace(manifest=SimpleNamespace(embedder=embedder, detector=detector))

    assert random_weights(snapshot("file", None)) == []
    assert random_weights(snapshot("default", "random")) == ["detector"]
    assert random_weights(snapshot("random", "default")) == ["embedder"]


def test_pictures_are_jpegs_of_the_gallery_image_and_its_thumbnail(client):
    image = client.get("/api/images", params={"limit": 2}).json()["images"][1]  # scene_000.jpg
    full = client.get(image["picture"])
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    picture = np.asarray(Image.open(io.BytesIO(full.content)).convert("RGB"), dtype=np.float32)
    original = np.asarray(Image.open(GALLERY / image["path"]).convert("RGB"), dtype=np.float32)
    assert picture.shape == original.shape and np.abs(picture - original).mean() < 4
    thumbnail = Image.open(io.BytesIO(client.get(image["thumbnail"]).content))
    assert thumbnail.size == (320, 240)


def test_query_by_upload_gives_what_the_python_api_gives(client, served):
    answer = client.post("/api/query", **upload(box=",".join(map(str, QUERY_BOX)), top_k=5))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = Searcher(served, device="cpu").query(QUERY_IMAGE, QUERY_BOX, top_k=5)
    assert [r["object_id"] for r in body["results"]] == [r.object_id for r in expected]
    np.testing.assert_allclose([r["score"] for r in body["results"]], [r.score for r in expected], atol=1e-4)
    first = body["results"][0]
    assert set(first) >= {"rank", "score", "image", "path", "image_id", "box", "label", "object_id", "thumbnail"}
    assert first["rank"] == 1 and first["label"] == "stripes-box-a0" and (first["width"], first["height"]) == (640, 480)
    assert body["query"]["box"] == list(map(float, QUERY_BOX))


def test_query_by_gallery_image_and_by_object_finds_that_object_first(client):
    detail = client.get("/api/images/5").json()
    target = detail["boxes"][1]
    by_image = client.post(
        "/api/query", data={"image_id": "5", "box": ",".join(map(str, target["box"])), "group": "object"}
    )
    assert by_image.json()["results"][0]["object_id"] == target["object_id"]
    similar = client.get(f"/api/objects/{target['object_id']}/similar", params={"group": "object", "top_k": 3}).json()
    assert similar["results"][0]["object_id"] == target["object_id"] and similar["results"][0]["score"] > 0.999
    assert len(similar["results"]) == 3
    whole = client.post("/api/query", **upload(top_k=50)).json()  # linked.jpg has no annotated objects
    assert whole["query"]["box"] is None and len({r["image_id"] for r in whole["results"]}) == 40


@pytest.mark.parametrize(
    "form, status, message",
    [
        ({"box": "4,153,907,270"}, 400, "outside"),
        ({"box": "1,2,3"}, 400, "four numbers"),
        ({"box": "10,10,10,50"}, 400, "box"),
        ({"top_k": "0"}, 422, "top_k 0 must lie between 1 and 100"),
        ({"top_k": "101"}, 422, "top_k 101 must lie between 1 and 100"),
        ({"top_k": "ten"}, 422, "top_k 'ten' must be a whole number"),
        ({"group": "scene"}, 422, "unknown group 'scene': use one of image, object"),
    ],
)
def test_bad_query_values_get_a_4xx_whose_detail_is_one_line_naming_them(client, form, status, message):
    answer = client.post("/api/query", **upload(**form))
    assert answer.status_code == status
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and message in detail


@pytest.mark.parametrize(
    "method, route, form, detail",
    [
        ("get", "/api/images?offset=-1", None, "offset -1 must be at least 0"),
        ("get", "/api/images?limit=0", None, "limit 0 must lie between 1 and 1000"),
        ("get", "/api/images?limit=many", None, "limit 'many' must be a whole number"),
        ("get", "/api/images/abc", None, "image_id 'abc' must be a whole number"),
        ("get", "/api/images/1.5/thumbnail", None, "image_id '1.5' must be a whole number"),
        ("get", "/api/objects/first/similar", None, "object_id 'first' must be a whole number"),
        ("get", "/api/objects/1/similar?top_k=0", None, "top_k 0 must lie between 1 and 100"),
        ("get", "/api/objects/1/similar?group=all", None, "unknown group 'all': use one of image, object"),
        ("post", "/api/query", {"image_id": "five"}, "image_id 'five' must be a whole number"),
        ("post", "/api/detect", {"box": "1,2,3,4"}, "image is required"),
    ],
)
def test_every_route_answers_bad_values_with_a_422_detail_string(client, method, route, form, detail):
    answer = getattr(client, method)(route, **({"data": form} if form else {}))
    assert answer.status_code == 422 and answer.json() == {"detail": detail}


def test_bad_uploads_and_unknown_ids_get_clear_4xx(client, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    answer = client.post("/api/query", **upload(text))
    assert answer.status_code == 400 and "notes.jpg: not an image file" in answer.json()["detail"]
    big = tmp_path / "big.png"
    Image.new("RGB", (2500, 2000), (200, 10, 10)).save(big)  # 5 MP, over the 4 MP limit, a small file
    answer = client.post("/api/query", **upload(big))
    assert answer.status_code == 413 and "2500x2000 pixels" in answer.json()["detail"]
    heavy = tmp_path / "heavy.jpg"
    heavy.write_bytes(os.urandom(2_100_000))
    answer = client.post("/api/query", **upload(heavy))
    assert answer.status_code == 413 and "limit of 2 MB" in answer.json()["detail"]
    assert client.post("/api/query", data={"box": "1,2,3,4"}).status_code == 400  # neither image nor image_id
    assert client.post("/api/query", **upload(image_id=5)).status_code == 400  # both
    assert client.get("/api/images/99999").status_code == 404
    assert client.get("/api/objects/99999/similar").status_code == 404
    answer = client.post("/api/detect", **upload())
    assert answer.status_code == 404 and "annotations" in answer.json()["detail"]


def test_nothing_outside_the_gallery_is_served(client):
    linked = next(
        i for i in client.get("/api/images", params={"limit": 1000}).json()["images"] if i["path"] == "linked.jpg"
    )
    for route in (linked["picture"], linked["thumbnail"], f"/api/images/{linked['image_id']}"):
        answer = client.get(route)
        assert answer.status_code == 403 and "outside the gallery" in answer.json()["detail"]
    for attempt in (
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd/picture",
        "/api/images/%2e%2e/picture",
        "/static/../server/app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/%2e%2e/cli.py",
        "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
    ):
        answer = client.get(attempt)
        assert answer.status_code in (404, 422), attempt
        assert b"root:" not in answer.content and b"import" not in answer.content, attempt


def test_the_page_and_the_openapi_schema_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {
        "/api/health",
        "/api/info",
        "/api/images",
        "/api/images/{image_id}",
        "/api/images/{image_id}/picture",
        "/api/images/{image_id}/thumbnail",
        "/api/query",
        "/api/objects/{object_id}/similar",
        "/api/detect",
    } <= set(schema["paths"])


def test_detect_endpoint_on_an_index_with_a_detector(tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(GALLERY / "scene_000.jpg", gallery)
    build_index(gallery, tmp_path / "index", random_detect(3), progress=False)
    client = TestClient(create_app(ServerState(tmp_path / "index", device="cpu")))
    info = client.get("/api/info").json()
    assert info["detector"] is True and info["random_weights"] == ["embedder", "detector"]
    found = client.post("/api/detect", **upload(GALLERY / "scene_000.jpg")).json()
    assert (found["width"], found["height"]) == (640, 480) and len(found["objects"]) == 3
    for item in found["objects"]:
        x1, y1, x2, y2 = item["box"]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480 and item["label"]
    # the boxes the index stored for that image: clicking one on the page queries a real gallery object
    stored = client.get("/api/images/1").json()["boxes"]
    np.testing.assert_allclose([o["box"] for o in found["objects"]], [o["box"] for o in stored], atol=0.01)


def test_serve_limits_from_the_options_are_checked_and_rounded_up_to_whole_bytes():
    assert ServerLimits.from_options(20, 5).max_upload_bytes == 20 * 2**20
    assert ServerLimits.from_options(1e-9, 5).max_upload_bytes == 1  # a positive limit never becomes 0 bytes
    assert ServerLimits.from_options(0.5, 7) == ServerLimits(max_upload_bytes=2**19, max_pixels=7)
    with pytest.raises(SettingsError, match=r"^--max-upload-mb 0 must be more than 0$"):
        ServerLimits.from_options(0, 5)
    with pytest.raises(SettingsError, match=r"^--max-upload-mb nan must be a finite number$"):
        ServerLimits.from_options(float("nan"), 5)
    with pytest.raises(SettingsError, match=r"^--max-pixels 0 must be at least 1$"):
        ServerLimits(max_pixels=0)
