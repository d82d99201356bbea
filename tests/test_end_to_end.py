"""The demo gallery through the real CLI, with seeded random weights and the gallery's annotation boxes."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from retrieval import Searcher, evaluate
from retrieval.cli.main import main
from retrieval.errors import SettingsError
from retrieval.testing.rows import all_rows

from tests.conftest import GALLERY, QUERY, SMALL_MAX_SIZE, SMALL_MIN_SIZE, random_detect_args

SMALL = ["--min-size", str(SMALL_MIN_SIZE), "--max-size", str(SMALL_MAX_SIZE)]
ANNOTATED = [
    "--objects",
    "annotations",
    "--annotations",
    str(GALLERY / "annotations.json"),
    "--weights",
    "random",
    "--quiet",
]


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def first_annotation(scene="scene_005.jpg"):
    coco = json.loads((GALLERY / "annotations.json").read_text())
    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == scene)
    x, y, w, h = next(a["bbox"] for a in coco["annotations"] if a["image_id"] == image_id)
    return [x, y, x + w, y + h]


@pytest.fixture(scope="module")
def resnet_index(tmp_path_factory):
    index = tmp_path_factory.mktemp("demo") / "resnet-index"
    result = cli("index", GALLERY, "--index", index, "--embedder", "resnet50", *ANNOTATED)
    assert result.exit_code == 0, result.output
    return index


@pytest.fixture(scope="module")
def roi_index(tmp_path_factory):
    index = tmp_path_factory.mktemp("demo") / "roi-index"
    result = cli("index", GALLERY, "--index", index, "--embedder", "roi", *ANNOTATED, *SMALL)
    assert result.exit_code == 0, result.output
    return index


def test_index_summary_counts_images_objects_and_skips(resnet_index):
    info = json.loads(cli("info", "--index", resnet_index, "--json").output)
    assert info["images"] == 40 and info["objects"] == 120 and info["skipped"] == []
    assert info["embedder"] == "resnet50" and info["dimension"] == 2048
    assert info["manifest"]["embedder"]["weights"]["source"] == "random"
    assert info["manifest"]["gallery_root"] == str(GALLERY)


def test_info_table_labels_every_row_once(resnet_index):
    lines = cli("info", "--index", resnet_index).stdout.splitlines()
    labels = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert labels == ["index", "gallery", "images", "objects", "embedder", "vectors", "boxes", "skipped"]
    assert "objects    120" in lines and f"boxes      annotations from {GALLERY / 'annotations.json'}" in lines


def test_a_bad_top_k_is_refused_alike_by_evaluate_query_and_the_cli(resnet_index):
    ground_truth, searcher = QUERY / "ground_truth.json", Searcher(resnet_index, device="cpu")
    for top_k, message in [
        (0, "--top-k 0 must be at least 1"),
        (-2, "--top-k -2 must be at least 1"),
        (1.5, "--top-k 1.5 must be a whole number"),
        (float("nan"), "--top-k nan must be a whole number"),
    ]:
        with pytest.raises(SettingsError) as from_evaluate:
            evaluate(resnet_index, ground_truth, top_k, searcher=searcher)
        with pytest.raises(SettingsError) as from_query:
            searcher.query(GALLERY / "scene_000.jpg", top_k=top_k)
        assert str(from_evaluate.value) == str(from_query.value) == message
    result = cli("evaluate", "--index", resnet_index, "--ground-truth", ground_truth, "--top-k", "-2")
    assert result.exit_code == 1 and result.stderr == "error: --top-k -2 must be at least 1\n"


def test_resnet50_demo_mean_average_precision_is_far_above_chance(resnet_index):
    report = json.loads(
        cli("evaluate", "--index", resnet_index, "--ground-truth", QUERY / "ground_truth.json", "--json").output
    )
    assert len(report["queries"]) == 16
    assert report["chance_mAP"] == pytest.approx(0.256, abs=0.01)
    assert report["mAP"] > 0.9
    assert report["P@1"] > 0.9 and report["recall@10"] > 0.9
    assert set(report) >= {"mAP", "P@1", "P@5", "P@10", "recall@10", "chance_mAP", "queries"}


def test_roi_demo_mean_average_precision_is_above_chance(roi_index):
    # Random FPN levels disagree with each other, so random-weight roi vectors only match objects of similar size;
    # the ranking is still clearly better than chance (trained weights are needed for real retrieval).
    report = evaluate(roi_index, QUERY / "ground_truth.json", device="cpu")
    assert report["mAP"] > report["chance_mAP"] + 0.04


@pytest.mark.parametrize("index_name", ["resnet_index", "roi_index"])
def test_querying_a_gallery_box_returns_that_object_first(index_name, request):
    index = request.getfixturevalue(index_name)
    box = first_annotation()
    result = cli(
        "query",
        GALLERY / "scene_005.jpg",
        "--index",
        index,
        "--box",
        ",".join(map(str, box)),
        "--group",
        "object",
        "--json",
    )
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)["results"][0]
    assert top["image"] == str(GALLERY / "scene_005.jpg")
    assert top["box"] == [float(v) for v in box]
    assert top["score"] >= 0.999
    assert top["detection_score"] is None and top["rank"] == 1


def test_query_json_contract_and_image_grouping(resnet_index):
    result = cli("query", QUERY / "rings-box-d1.jpg", "--index", resnet_index, "--top-k", "5", "--json")
    results = json.loads(result.output)["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    keys = {"rank", "score", "image", "box", "label", "detection_score", "object_id", "item", "video", "frame", "time"}
    assert all(set(r) == keys | {"span"} for r in results)
    assert all((r["video"], r["frame"], r["time"], r["span"]) == (None,) * 4 for r in results)  # no video frames
    assert all(r["image"].endswith("/" + r["item"]) for r in results)  # a folder's items: their relative paths
    assert len({r["image"] for r in results}) == 5  # one entry per image
    assert all(os.path.isabs(r["image"]) for r in results)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_object_grouping_can_repeat_an_image(resnet_index):
    searcher = Searcher(resnet_index, device="cpu")
    objects = searcher.query(GALLERY / "scene_000.jpg", top_k=120, group="object")
    assert len(objects) == 120 and len({r.image for r in objects}) == 40


def test_human_output_is_a_table_of_ten(resnet_index):
    box = ",".join(map(str, first_annotation()))
    result = cli("query", GALLERY / "scene_005.jpg", "--index", resnet_index, "--box", box)
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "image", "box", "label", "det", "id"]
    assert len(lines) == 11 and lines[1].split()[0] == "1"


def test_save_vis_writes_the_query_beside_its_results(resnet_index, tmp_path):
    picture = tmp_path / "out" / "result.png"
    box = ",".join(map(str, first_annotation()))
    result = cli("query", GALLERY / "scene_005.jpg", "--index", resnet_index, "--box", box, "--save-vis", picture)
    assert result.exit_code == 0 and f"picture written to {picture}" in result.output
    width, height = Image.open(picture).size
    assert (width, height) == (2 * 220 + 5 * 220, 2 * (220 + 26))


@pytest.mark.parametrize(
    "box, message",
    [
        (
            "0,0,700,100",
            "error: box 0,0,700,100 lies outside the 640x480 image: need 0 <= x1 < x2 <= 640, 0 <= y1 < y2 <= 480",
        ),
        (
            "10,10,10,50",
            "error: box 10,10,10,50 has zero or negative area in the 640x480 image: need x1 < x2 and y1 < y2",
        ),
        ("1,2,3", "error: box '1,2,3' must be four numbers x1,y1,x2,y2 within the 640x480 image (got 3 values)"),
    ],
)
def test_bad_query_boxes_fail_with_one_line(resnet_index, box, message):
    result = cli("query", GALLERY / "scene_005.jpg", "--index", resnet_index, "--box", box)
    assert result.exit_code == 1
    assert result.output.strip() == message


def test_query_against_a_missing_index_or_image_is_one_line(tmp_path, resnet_index):
    result = cli("query", GALLERY / "scene_005.jpg", "--index", tmp_path / "none")
    assert result.exit_code == 1 and result.output.startswith("error: index folder") and result.output.count("\n") == 1
    result = cli("query", tmp_path / "absent.jpg", "--index", resnet_index)
    assert result.exit_code == 1 and "absent.jpg: cannot be read" in result.output


def test_query_refuses_models_other_than_the_index_was_built_with(resnet_index, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(resnet_index, copy)
    manifest_path = copy / (copy / "HEAD").read_text().strip() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["embedder"]["weights"]["state_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    result = cli("query", GALLERY / "scene_005.jpg", "--index", copy)
    assert result.exit_code == 1
    assert (
        "was built with resnet50 weights random seed 0 (state 000000000000), but the model loaded now has"
        in result.output
    )


def test_indexing_again_passes_every_unchanged_image_over(resnet_index):
    result = cli("index", GALLERY, "--index", resnet_index, "--quiet")  # the index's own settings
    assert result.exit_code == 0, result.output
    assert "indexed 40 images, 120 objects" in result.output
    assert "0 new, 0 changed, 40 unchanged, 0 removed" in result.output


def test_detected_objects_are_found_again_by_their_own_box(tmp_path):
    """--objects detect: random weights with score threshold 0 give a fixed number of boxes per image."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("scene_001.jpg", "scene_002.jpg", "scene_003.jpg"):
        shutil.copy(GALLERY / name, gallery / name)
    for embedder in ("roi", "resnet50"):
        index = tmp_path / f"{embedder}-index"
        result = cli(
            "index",
            gallery,
            "--index",
            index,
            "--embedder",
            embedder,
            *random_detect_args(4),
            "--quiet",
            *SMALL,
        )
        assert result.exit_code == 0, result.output
        assert "indexed 3 images, 12 objects" in result.output
        searcher = Searcher(index, device="cpu")
        row, table = 5, all_rows(searcher.snapshot)
        box = table.boxes[row]
        image_id = table.object_image[row]
        (top,) = searcher.query(gallery / table.image_paths[image_id], box.tolist(), top_k=1, group="object")
        assert top.object_id == int(table.object_ids[row]) and top.score >= 0.999
        assert top.label is not None and 0.0 <= top.detection_score <= 1.0


def test_whole_image_query_without_box(resnet_index):
    searcher = Searcher(resnet_index, device="cpu")
    vector = searcher.embed_query(QUERY / "stripes-box-a0.jpg")
    assert vector.shape == (2048,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
