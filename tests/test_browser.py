"""The web page in a real headless browser (Debian's chromium driven by Playwright) against the real
server on loopback: upload an image, draw a box, see the expected results; click a result; pick a
gallery image and click one of its objects; a video's frame result shows its time; a server with a token:
the page asks for it once and sends it with every request."""

import json
import os
import re
import shutil

import pytest

from contextlib import contextmanager

from retrieval import Searcher, build_index
from retrieval.text import clock

from tests.conftest import ANNOTATED_RESNET, GALLERY, QUERY
from retrieval.testing.live_server import running_server
from retrieval.testing.rows import all_rows
from tests.test_video_pictures import VIDEO_SETTINGS, video_gallery

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install '.[test]')"
)
BROWSER = os.environ.get("RETRIEVAL_CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium found (apt-get install chromium, or set RETRIEVAL_CHROMIUM to a browser)"
)
QUERY_ENTRY = "stripes-box-a0.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    index = tmp_path_factory.mktemp("browser") / "index"
    build_index(GALLERY, index, ANNOTATED_RESNET, progress=False)
    with running_server(index) as base:
        yield base, index


@contextmanager
def opened(base: str):
    """The page of the server at ``base``, just opened."""
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        yield page
        browser.close()


def summary_says(page, summary: str) -> None:
    page.wait_for_function(f"document.getElementById('index-summary').textContent.includes({summary!r})")


@contextmanager
def browsing(base: str, summary: str):
    """A page of the server at ``base``, once its index summary says ``summary``."""
    with opened(base) as page:
        summary_says(page, summary)
        yield page


@pytest.fixture
def page(server):
    with browsing(server[0], "40 images") as page:
        yield page


def drag_box(page, box):
    """Draw ``box`` (image pixels) on the query canvas with the mouse."""
    canvas = page.locator("#query-canvas")
    canvas.wait_for(state="visible")
    rect = canvas.bounding_box()
    scale = rect["width"] / page.evaluate("document.getElementById('query-canvas').width")
    x1, x2 = (rect["x"] + v * scale for v in (box[0], box[2]))
    y1, y2 = (rect["y"] + v * scale for v in (box[1], box[3]))
    page.mouse.move(x1, y1)
    page.mouse.down()
    page.mouse.move((x1 + x2) / 2, (y1 + y2) / 2, steps=4)
    page.mouse.move(x2, y2, steps=4)
    page.mouse.up()


def shown_box(page) -> list[float]:
    text = page.locator("#query-box").text_content()
    return [float(v) for v in re.findall(r"[\d.]+", text)]


def results(page) -> list[dict]:
    page.wait_for_function("document.getElementById('status').textContent.includes('results in')")
    return page.eval_on_selector_all(
        ".result", "cards => cards.map(c => ({path: c.dataset.path, id: Number(c.dataset.objectId)}))"
    )


def test_the_page_says_the_index_was_built_with_random_weights(page):
    notice = page.locator("#weights-notice")
    notice.wait_for(state="visible")
    assert "RANDOM weights: this index's embedder had seeded random weights" in notice.text_content()


def test_upload_draw_a_box_and_see_the_expected_top_result(page, server):
    entry = next(
        q for q in json.loads((QUERY / "ground_truth.json").read_text())["queries"] if q["image"] == QUERY_ENTRY
    )
    page.set_input_files("#file-input", str(QUERY / QUERY_ENTRY))
    drag_box(page, entry["box"])
    found = results(page)
    box = shown_box(page)
    assert max(abs(a - b) for a, b in zip(box, entry["box"])) <= 3  # the mouse lands within a pixel or two
    expected = Searcher(server[1], device="cpu").query(QUERY / QUERY_ENTRY, box, top_k=10)
    assert [r["id"] for r in found] == [r.object_id for r in expected]
    assert "../gallery/" + found[0]["path"] in entry["positives"]


def test_clicking_a_result_queries_with_that_object(page):
    page.set_input_files("#file-input", str(QUERY / QUERY_ENTRY))
    page.locator("#whole-image").click()
    third = results(page)[2]
    page.evaluate("document.getElementById('status').textContent = ''")
    page.locator(".result").nth(2).click()
    assert results(page)[0]["id"] == third["id"]
    assert shown_box(page)  # the clicked object's image is the query now, with its box


def test_pick_a_gallery_image_and_click_one_of_its_objects(page, server):
    page.locator("#gallery-button").click()
    page.locator(".gallery-image").nth(4).click()  # scene_004.jpg
    canvas = page.locator("#query-canvas")
    page.wait_for_function("document.getElementById('query-canvas').width === 640")
    snapshot = Searcher(server[1], device="cpu").snapshot
    table = all_rows(snapshot)
    image_id = next(i for i, path in table.image_paths.items() if path == "scene_004.jpg")
    row = int((table.object_image == image_id).nonzero()[0][0])
    x1, y1, x2, y2 = (float(v) for v in table.boxes[row])
    rect = canvas.bounding_box()
    scale = rect["width"] / 640
    page.mouse.click(rect["x"] + (x1 + x2) / 2 * scale, rect["y"] + (y1 + y2) / 2 * scale)
    assert results(page)[0]["id"] == int(table.object_ids[row])


def test_a_video_result_shows_the_time_of_its_frame(tmp_path):
    """Needs the frame fields (``time``, ``span``) in ``/api/query`` results: the result contract."""
    gallery = video_gallery(tmp_path)
    build_index(gallery, tmp_path / "index", VIDEO_SETTINGS, progress=False)
    expected = Searcher(tmp_path / "index", device="cpu").query(tmp_path / "object.png", None, top_k=10)
    with running_server(tmp_path / "index") as base, browsing(base, "objects") as page:
        page.set_input_files("#file-input", str(tmp_path / "object.png"))
        page.locator("#whole-image").click()
        assert [r["id"] for r in results(page)] == [r.object_id for r in expected]
        best = next(r for r in expected if r.time is not None)
        card = page.locator(f".result[data-object-id='{best.object_id}']")
        shown = card.locator(".time").text_content()
        assert shown.startswith(f"at {clock(best.time)}") and card.locator(".path").text_content() == "clip.mp4"
        start, end = best.span
        assert shown == f"at {clock(best.time)}" + (f", seen {clock(start)}–{clock(end)}" if end > start else "")
        thumbnail = card.locator("img").element_handle()
        page.wait_for_function("picture => picture.complete && picture.naturalWidth > 0", arg=thumbnail)
        assert thumbnail.evaluate("picture => picture.naturalWidth") == 320  # the frame, from the server


def test_a_server_with_a_token_is_asked_for_it_once_and_gets_it_with_every_request(server, tmp_path):
    token = "browser-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "token").chmod(0o600)
    asked = []
    with running_server(server[1], "--token-file", str(tmp_path / "token"), token=token) as base, opened(base) as page:
        page.on("request", lambda request: asked.append(request))
        dialog = page.locator("#token-dialog")
        dialog.wait_for(state="visible")
        assert page.locator("#token-reason").text_content().startswith("this server needs its token")
        page.fill("#token-input", "not-the-token-0123456789")
        page.locator("#token-button").click()
        page.wait_for_function("document.getElementById('token-reason').textContent.includes(\"not this server's\")")
        page.fill("#token-input", token)
        page.locator("#token-button").click()
        summary_says(page, "40 images")
        page.set_input_files("#file-input", str(QUERY / QUERY_ENTRY))
        page.locator("#whole-image").click()
        assert len(results(page)) == 10
        thumbnail = page.locator(".result img").first.element_handle()
        page.wait_for_function("picture => picture.complete && picture.naturalWidth > 0", arg=thumbnail)
        page.reload()  # the token is kept for the tab's session: no second question
        summary_says(page, "40 images")
        assert not dialog.is_visible()
        sent = [(r.url, r.all_headers().get("authorization")) for r in asked if "/api/" in r.url]
    assert all("token" not in url for url, _ in sent)  # never in a URL (nor in a log line)
    with_token = [url for url, header in sent if header == f"Bearer {token}"]
    assert any(url.endswith("/thumbnail") for url in with_token) and any("/api/query" in url for url in with_token)
    # every request carried the right token but the one the wrong token was tried with (the first, tokenless
    # request went before the listener was on; after the reload, the first one carried the token)
    assert [header for _, header in sent if header != f"Bearer {token}"] == ["Bearer not-the-token-0123456789"]
