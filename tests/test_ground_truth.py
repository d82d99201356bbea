"""Bad ground-truth files give one clear error naming the file and the entry."""

import json

import pytest

from retrieval import IndexSettings, build_index, evaluate
from retrieval.errors import GroundTruthError

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
            "queries[0]: box 0,0,9999,10 lies outside the 640x480 image",
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
