"""The demo data script is deterministic and matches the committed gallery/ and query/."""

import json

import numpy as np
from retrieval.testing.demo_data import generate
from PIL import Image

from tests.conftest import GALLERY, QUERY


def test_generation_reproduces_the_committed_demo_data(tmp_path):
    summary = generate(tmp_path)
    assert summary == {"instances": 16, "scenes": 40, "queries": 16}
    for relative in ("gallery/annotations.json", "query/ground_truth.json"):
        assert json.loads((tmp_path / relative).read_text()) == json.loads((GALLERY.parent / relative).read_text())
    for name in ("gallery/scene_000.jpg", "gallery/scene_039.jpg", "query/rings-box-d1.jpg"):
        ours = np.asarray(Image.open(tmp_path / name), dtype=float)
        committed = np.asarray(Image.open(GALLERY.parent / name), dtype=float)
        assert ours.shape == committed.shape and np.abs(ours - committed).mean() < 1.0


def test_each_instance_appears_in_several_scenes_at_several_scales():
    truth = json.loads((QUERY / "ground_truth.json").read_text())["queries"]
    coco = json.loads((GALLERY / "annotations.json").read_text())
    assert all(7 <= len(q["positives"]) <= 8 for q in truth)
    ranges = []
    for category in coco["categories"]:
        widths = [a["bbox"][2] for a in coco["annotations"] if a["category_id"] == category["id"]]
        ranges.append(max(widths) / min(widths))
    assert min(ranges) > 1.2 and np.mean(ranges) > 1.8  # each instance at clearly different sizes
