#!/usr/bin/env python3
"""The README's pictures: the web page after a query (docs/page.jpg) and a --save-vis picture
(docs/query-result.jpg), both from the demo data with seeded random weights.

Needs playwright (pip install -e '.[test]') and a chromium (apt-get install chromium, or
--browser PATH). Usage: python scripts/screenshots.py [--browser /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from retrieval.testing.live_server import running_server

ROOT = Path(__file__).resolve().parent.parent

QUERY_IMAGE, QUERY_BOX = ROOT / "query" / "stripes-box-a0.jpg", (4, 153, 107, 270)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium", help="a chromium executable")
    args = parser.parse_args()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        index = Path(scratch) / "index"
        index_and_save_vis(index, docs / "query-result.jpg")
        with running_server(index) as base:
            screenshot_page(base, args.browser, docs / "page.jpg")
    print(f"wrote {docs / 'page.jpg'} and {docs / 'query-result.jpg'}")


def index_and_save_vis(index: Path, picture: Path) -> None:
    """Index the demo gallery's annotated boxes (random ResNet50 weights) and save the query's --save-vis."""
    retrieval = [sys.executable, "-m", "retrieval.cli.main"]
    annotations = ["--objects", "annotations", "--annotations", str(ROOT / "gallery/annotations.json")]
    options = [*annotations, "--embedder", "resnet50", "--weights", "random", "--quiet"]
    subprocess.run([*retrieval, "index", str(ROOT / "gallery"), "--index", str(index), *options], check=True)
    box = ",".join(map(str, QUERY_BOX))
    query = [*retrieval, "query", str(QUERY_IMAGE), "--box", box, "--index", str(index), "--save-vis", str(picture)]
    subprocess.run(query, check=True, stdout=subprocess.DEVNULL)


def screenshot_page(base: str, browser_path: str, picture: Path) -> None:
    """The page at ``base`` after uploading the query image and drawing its box, as a JPEG."""
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('index-summary').textContent.includes('images')")
        page.set_input_files("#file-input", str(QUERY_IMAGE))
        canvas = page.locator("#query-canvas")
        canvas.wait_for(state="visible")
        rect = canvas.bounding_box()
        scale = rect["width"] / page.evaluate("document.getElementById('query-canvas').width")
        x1, y1, x2, y2 = QUERY_BOX
        page.mouse.move(rect["x"] + x1 * scale, rect["y"] + y1 * scale)
        page.mouse.down()
        page.mouse.move(rect["x"] + x2 * scale, rect["y"] + y2 * scale, steps=6)
        page.mouse.up()
        page.wait_for_function("document.getElementById('status').textContent.includes('results in')")
        page.wait_for_function("[...document.images].every(image => image.complete)")
        page.screenshot(path=str(picture), type="jpeg", quality=85)
        browser.close()


if __name__ == "__main__":
    main()
