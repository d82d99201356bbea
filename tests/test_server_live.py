"""The real server on loopback: many parallel clients, and an index updated while it serves."""

import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from retrieval import build_index

from tests.conftest import ANNOTATED_RESNET, GALLERY, QUERY, RANDOM_WHOLE
from retrieval.testing.live_server import running_server

CLIENTS, QUERIES = 8, 200


@pytest.fixture(scope="module")
def ground_truth():
    return json.loads((QUERY / "ground_truth.json").read_text())["queries"]


def post_query(client: httpx.Client, base: str, entry: dict, top_k: int = 5) -> httpx.Response:
    image = QUERY / entry["image"]
    return client.post(
        f"{base}/api/query",
        files={"image": (image.name, image.read_bytes(), "image/jpeg")},
        data={"box": ",".join(map(str, entry["box"])), "top_k": str(top_k)},
        timeout=120,
    )


def test_200_queries_from_8_parallel_clients(tmp_path, ground_truth, capsys):
    build_index(GALLERY, tmp_path / "index", ANNOTATED_RESNET, progress=False)
    with running_server(tmp_path / "index") as base:
        with httpx.Client() as client:
            expected = {e["image"]: post_query(client, base, e).json()["results"][0]["path"] for e in ground_truth}
        for entry in ground_truth:  # random ResNet50 vectors of identical sprites: P@1 is 1 on the demo
            assert "../gallery/" + expected[entry["image"]] in entry["positives"]

        def one_client(number: int) -> list[tuple[float, int, str]]:
            answers = []
            with httpx.Client() as client:
                for i in range(QUERIES // CLIENTS):
                    entry = ground_truth[(number * 7 + i) % len(ground_truth)]
                    started = time.perf_counter()
                    response = post_query(client, base, entry)
                    seconds = time.perf_counter() - started
                    top = response.json()["results"][0]["path"] if response.status_code == 200 else response.text
                    answers.append((seconds, response.status_code, top, entry["image"]))
            return answers

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [answer for part in pool.map(one_client, range(CLIENTS)) for answer in part]
    assert len(answers) == QUERIES
    assert [status for _, status, _, _ in answers] == [200] * QUERIES
    assert all(top == expected[image] for _, _, top, image in answers)
    latencies = sorted(seconds for seconds, _, _, _ in answers)
    with capsys.disabled():
        print(
            f"\n{QUERIES} queries from {CLIENTS} clients: p50 {1000 * statistics.median(latencies):.0f} ms, "
            f"p99 {1000 * float(np.percentile(latencies, 99)):.0f} ms"
        )


def test_a_running_server_answers_from_one_state_while_the_index_grows_and_then_from_the_new_one(
    tmp_path, ground_truth
):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    scenes = sorted(GALLERY.glob("scene_*.jpg"))
    for scene in scenes[:20]:
        shutil.copy(scene, gallery)
    settings = RANDOM_WHOLE
    build_index(gallery, tmp_path / "index", settings, progress=False)
    answers, stop = [], threading.Event()
    with running_server(tmp_path / "index", "--poll-seconds", "0.2") as base:

        def keep_asking():
            with httpx.Client() as client:
                while not stop.is_set():
                    response = post_query(client, base, ground_truth[0], top_k=40)
                    answers.append((response.status_code, response.json()))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            for scene in scenes[20:]:
                shutil.copy(scene, gallery)
            build_index(gallery, tmp_path / "index", settings, commit_seconds=0, progress=False)
            deadline = time.monotonic() + 30
            while httpx.get(f"{base}/api/health").json()["images"] != 40 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            asker.join()
        health = httpx.get(f"{base}/api/health").json()
        assert health["images"] == 40 and health["objects"] == 40
        new_scene = scenes[30].name
        detail = next(i for i in httpx.get(f"{base}/api/images").json()["images"] if i["path"] == new_scene)
        box = httpx.get(f"{base}/api/images/{detail['image_id']}").json()["boxes"][0]
        found = httpx.post(
            f"{base}/api/query",
            data={"image_id": str(detail["image_id"]), "box": ",".join(map(str, box["box"])), "group": "object"},
        ).json()
        assert found["results"][0]["object_id"] == box["object_id"]
    assert answers and all(status == 200 for status, _ in answers)
    generations = [body["generation"] for _, body in answers]
    assert generations == sorted(generations) and generations[-1] > generations[0]
    for _, body in answers:  # each answer is one state: distinct images, ranked, every one of them
        results = body["results"]
        assert len({r["image_id"] for r in results}) == len(results)
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        assert all(r["path"] == r["image"].rsplit("/", 1)[1] for r in results)
    counts = {body["generation"]: len(body["results"]) for _, body in answers}
    assert counts[generations[0]] == 20 and counts[generations[-1]] == 40


def serve_command(index, port: int) -> subprocess.CompletedProcess:
    """``retrieval serve`` that must stop by itself (on a bad or busy port), with its output."""
    command = [sys.executable, "-m", "retrieval.cli.main", "serve", "--index", str(index), "--port", str(port)]
    return subprocess.run([*command, "--device", "cpu"], capture_output=True, text=True, timeout=120)


def test_serve_refuses_a_port_out_of_range_before_anything_else(tmp_path):
    done = serve_command(tmp_path / "no-index", 99999)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "error: --port 99999 must lie between 1 and 65535\n"


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path):
    build_index(GALLERY, tmp_path / "index", RANDOM_WHOLE, progress=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve_command(tmp_path / "index", port)
    assert done.returncode == 1 and done.stdout == "" and "serving" not in done.stderr
    assert done.stderr == (
        f"error: port {port} on 127.0.0.1 is in use (another server is listening there); choose another with --port\n"
    )
