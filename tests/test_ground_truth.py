"""Bad ground-truth files give one clear error naming the file and the entry."""

import json
import os

import pytest

from retrieval import IndexSettings, build_index, evaluate
from retrieval.errors import GroundTruthError
from retrieval.search.searcher import Searcher

from tests.conftest import copy_demo_images


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gt")
    copy_demo_images(folder / "gallery", 3)
    build_index(
        folder / "gallery",
        folder / "index",
        IndexSettings(embedder="resnet50", objects="whole", weights="random"),
        progress=False,
    )
    return folder


def write(folder, content) -> str:
    path = folder / "gt.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


GOOD = {
    "image": "gallery/gallery-scene_000.jpg",
    "box": [0, 0, 100, 100],
    "positives": ["gallery/gallery-scene_001.jpg"],
}


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"queries": [\n  {"image": "a.jpg",, }\n]}',
            "is not valid JSON: Expecting property name enclosed in double quotes at line 2",
        ),
        ({"query": []}, "needs a non-empty 'queries' list"),
        ({"queries": [GOOD, {"box": [0, 0, 1, 1]}]}, "queries[1] needs an 'image' path"),
        (
            {"queries": [{**GOOD, "box": "0,0,1,1"}]},
            "queries[0] box '0,0,1,1' must be [x1, y1, x2, y2] numbers or null",
        ),
        ({"queries": [{**GOOD, "positives": "gallery/a.jpg"}]}, "queries[0] 'positives' must be a list of image paths"),
        ({"queries": [{**GOOD, "positives": []}]}, "queries[0] has no positives"),
        ({"queries": [GOOD, {**GOOD, "positives": ["gallery/nope.jpg"]}]}, "queries[1] positive"),
        (
            {"queries": [{**GOOD, "box": [0, 0, 9999, 10]}]},
            "gallery/gallery-scene_000.jpg: box 0,0,9999,10 lies outside the 640x480 image",
        ),
        ({"queries": [{**GOOD, "image": "missing.jpg"}]}, "queries[0]: "),
    ],
)
def test_bad_ground_truth_names_the_entry(small_index, content, message):
    path = write(small_index, content)
    with pytest.raises(GroundTruthError) as error:
        evaluate(small_index / "index", path, device="cpu")
    assert path in str(error.value) and message in str(error.value), str(error.value)


def test_missing_query_image_is_named(small_index):
    path = write(small_index, {"queries": [{**GOOD, "image": "missing.jpg"}]})
    with pytest.raises(
        GroundTruthError, match=r"queries\[0\]: .*missing.jpg: cannot be read \(No such file or directory\)"
    ):
        evaluate(small_index / "index", path, device="cpu")


def test_good_ground_truth_scores(small_index):
    path = write(small_index, {"queries": [{**GOOD, "box": None, "junk": ["gallery/gallery-scene_002.jpg"]}]})
    report = evaluate(small_index / "index", path, device="cpu")
    query = report["queries"][0]
    assert query["positives"] == 1 and 0 < report["mAP"] <= 1 and report["chance_mAP"] == pytest.approx(0.75)


def test_a_bad_query_after_good_ones_is_named_by_its_position(small_index):
    bad = {**GOOD, "box": [0, 0, 9999, 10]}
    path = write(small_index, {"queries": [GOOD, GOOD, bad, GOOD]})
    with pytest.raises(GroundTruthError, match=r"queries\[2\]: .*gallery-scene_000.jpg: box 0,0,9999,10 lies"):
        evaluate(small_index / "index", path, device="cpu")


def test_batched_evaluation_scores_each_query_as_its_own_search_ranks_it(small_index):
    """``evaluate`` embeds and searches in batches; each query's AP and P@1 equal those of ``Searcher.query``'s
    ranking of that query alone (a batch smaller than the queries, so several batches run)."""
    boxes = [None, [0, 0, 100, 100], [50, 40, 300, 200], [10, 10, 639, 479], [200, 100, 400, 300]]
    images = ["gallery/gallery-scene_000.jpg", "gallery/gallery-scene_001.jpg", "gallery/gallery-scene_002.jpg"]
    entries = [
        {"image": images[i % 3], "box": box, "positives": [images[(i + 1) % 3]]}
        for i, box in enumerate(boxes * 2)
    ]
    path = write(small_index, {"queries": entries})
    searcher = Searcher(small_index / "index", device="cpu")
    report = evaluate(small_index / "index", path, searcher=searcher, batch_size=3)
    for entry, row in zip(entries, report["queries"]):
        results = searcher.query(small_index / entry["image"], entry["box"], top_k=3)
        names = [os.path.basename(r.image) for r in results]
        positive = os.path.basename(entry["positives"][0])
        assert row["AP"] == pytest.approx(1 / (names.index(positive) + 1))
        assert row["P@1"] == (names[0] == positive)
