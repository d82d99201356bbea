"""``retrieval detect`` (pictures and COCO-style JSON) and ``retrieval export`` (the seeds' formats)."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from openpyxl import load_workbook
from PIL import Image
from pycocotools.coco import COCO

from retrieval import IndexSettings, Searcher, build_index
from retrieval.cli.main import main
from retrieval.models.detectors.architectures import build_architecture
from retrieval.models.detectors.checkpoint import save_checkpoint
from retrieval.models.weights import seeded_init
from retrieval.errors import SettingsError
from retrieval.tools.detect import DetectSettings
from retrieval.tools.export import embedding_file_name
from retrieval.testing.rows import all_rows

from tests.conftest import GALLERY, RANDOM_WHOLE, SMALL_MAX_SIZE, SMALL_MIN_SIZE, random_detect

SMALL = ["--min-size", str(SMALL_MIN_SIZE), "--max-size", str(SMALL_MAX_SIZE)]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_detect_draws_every_image_and_writes_coco_detections(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("scene_000.jpg", "scene_001.jpg"):
        shutil.copy(GALLERY / name, folder / name)
    (folder / "broken.jpg").write_text("not an image")
    single = tmp_path / "scene_002.jpg"
    shutil.copy(GALLERY / "scene_002.jpg", single)
    weights = ["--weights", "random", "--score-threshold", "0", "--max-objects", "4"]
    inputs = [folder, single, tmp_path / "missing.jpg"]
    result = cli("detect", *inputs, "--out", tmp_path / "out", *weights, *SMALL, "--quiet")
    assert result.exit_code == 0, result.output
    assert "12 objects in 3 images" in result.output and "skipped 2 files" in result.output
    assert "broken.jpg: not an image file" in result.output and "missing.jpg: no such file" in result.output
    assert result.output.count("broken.jpg") == 1  # the reason does not repeat the path
    for name in ("photos/scene_000.jpg", "photos/scene_001.jpg", "scene_002.jpg"):
        drawn = np.asarray(Image.open(tmp_path / "out" / name).convert("RGB"), dtype=np.int16)
        original = np.asarray(Image.open(GALLERY / name.split("/")[-1]).convert("RGB"), dtype=np.int16)
        assert drawn.shape == original.shape and np.abs(drawn - original).max() > 100  # boxes drawn on it
    coco = COCO(str(tmp_path / "out" / "detections.json"))
    assert sorted(image["file_name"] for image in coco.dataset["images"]) == [
        "photos/scene_000.jpg",
        "photos/scene_001.jpg",
        "scene_002.jpg",
    ]
    for image in coco.dataset["images"]:
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(annotations) == 4
        for annotation in annotations:
            x, y, w, h = annotation["bbox"]
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 640.01 and y + h <= 480.01
            assert 0 <= annotation["score"] <= 1 and annotation["category_id"] in coco.cats
    results = coco.loadRes(coco.dataset["annotations"])  # also valid as a COCO results file
    assert len(results.getAnnIds()) == 12


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--min-size", 0, "--min-size 0 must be at least 32"),
        ("--max-size", 100, "--max-size 100 must be at least --min-size (320)"),
        ("--max-objects", -3, "--max-objects -3 must be at least 1"),
        ("--score-threshold", 1.5, "--score-threshold 1.5 must lie between 0 and 1"),
    ],
)
def test_detect_refuses_detector_settings_out_of_range_in_one_line(tmp_path, option, value, message):
    settings = {"--min-size": SMALL_MIN_SIZE, "--max-size": SMALL_MAX_SIZE, option: value}
    given = [str(part) for pair in settings.items() for part in pair]
    result = cli("detect", GALLERY / "scene_000.jpg", "--out", tmp_path / "out", "--weights", "random", *given)
    assert result.exit_code == 1 and result.output == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_detect_with_a_checkpoint_labels_and_numbers_objects_with_its_own_classes(tmp_path):
    classes = ["square", "disc", "bar"]
    with seeded_init(seed=1):
        model = build_architecture("mobilenet_v3_large_320_fpn", len(classes) + 1, 160, 240)
    save_checkpoint(tmp_path / "mine.pt", model, "mobilenet_v3_large_320_fpn", classes)
    options = ["--detector", tmp_path / "mine.pt", "--score-threshold", "0", "--max-objects", "3"]
    result = cli("detect", GALLERY / "scene_000.jpg", "--out", tmp_path / "out", *options, "--quiet")
    assert result.exit_code == 0, result.output
    assert "3 objects in 1 image;" in result.output
    coco = COCO(str(tmp_path / "out" / "detections.json"))
    assert coco.dataset["categories"] == [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    assert coco.dataset["info"]["detector"]["classes"] == classes
    for annotation in coco.dataset["annotations"]:
        assert annotation["category_id"] in (1, 2, 3)


def test_detections_of_a_folder_index_it_with_those_boxes(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for scene in sorted(GALLERY.glob("scene_00*.jpg"))[:3]:
        shutil.copy(scene, folder)
    weights = ["--weights", "random", "--score-threshold", "0", "--max-objects", "2"]
    result = cli("detect", folder, "--out", tmp_path / "out", *weights, *SMALL, "--quiet")
    assert result.exit_code == 0, result.output
    index = tmp_path / "index"
    given = {"objects": "annotations", "annotations": str(tmp_path / "out/detections.json")}
    build_index(folder, index, IndexSettings(**{**RANDOM_WHOLE.to_dict(), **given}), progress=False)
    detections = json.loads((tmp_path / "out/detections.json").read_text())
    stored = all_rows(Searcher(index, device="cpu").snapshot).boxes
    expected = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in detections["annotations"])]
    np.testing.assert_allclose(np.sort(stored, axis=0), np.sort(np.array(expected, np.float32), axis=0), atol=0.01)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    gallery = root / "gallery"
    (gallery / "sub").mkdir(parents=True)
    for number, scene in enumerate(sorted(GALLERY.glob("scene_*.jpg"))[:4]):
        shutil.copy(scene, gallery / ("sub" if number % 2 else "") / scene.name)
    build_index(gallery, root / "index", random_detect(3), progress=False)
    return root / "index"


def test_export_per_image(index, tmp_path):
    result = cli("export", "--index", index, "--format", "per-image", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    searcher = Searcher(index, device="cpu")
    snapshot = searcher.snapshot
    table = all_rows(snapshot)
    with open(tmp_path / "out/summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sheet = load_workbook(tmp_path / "out/summary.xlsx").active
    cells = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert cells[0] == ["image", "boxes", "embedding_size", "embedding_file"]
    assert [[r["image"], int(r["boxes"]), int(r["embedding_size"]), r["embedding_file"]] for r in rows] == cells[1:]
    assert sorted(r["image"] for r in rows) == sorted(table.image_paths.values())
    assert "sub/scene_001.jpg" in {r["image"] for r in rows}
    for row in rows:
        assert row["embedding_file"] == embedding_file_name(row["image"])
        vectors = np.load(tmp_path / "out" / row["embedding_file"])
        assert vectors.shape == (3, 1024) and vectors.dtype == np.float32
        image_id = next(i for i, p in table.image_paths.items() if p == row["image"])
        for vector, box in zip(vectors, table.boxes[table.object_image == image_id]):
            again = searcher.embed_query(snapshot.gallery_root / table.image_paths[int(image_id)], box.tolist())
            assert float(vector @ again) > 0.999  # the row is that box's embedding


def test_export_features(index, tmp_path):
    result = cli("export", "--index", index, "--format", "features", "--out", tmp_path / "out")
    assert result.exit_code == 0 and "wrote 4 files" in result.output
    features = np.load(tmp_path / "out/fts.npy")
    assert features.dtype == np.float16 and features.shape == (12, 1024)
    tensor = torch.load(tmp_path / "out/fts.pth", weights_only=True)
    assert torch.equal(tensor, torch.from_numpy(features))
    paths = json.loads((tmp_path / "out/img_list.json").read_text())
    boxes = json.loads((tmp_path / "out/boxes.json").read_text())
    assert len(paths) == len(boxes) == 12 and [b["image"] for b in boxes] == paths
    searcher = Searcher(index, device="cpu")
    for row in (0, 5, 11):
        again = searcher.embed_query(paths[row], boxes[row]["box"])
        assert float(features[row].astype(np.float32) @ again) > 0.998
    assert np.allclose(np.linalg.norm(features.astype(np.float32), axis=1), 1, atol=2e-3)


def test_export_of_a_missing_index_is_one_clear_line(tmp_path):
    result = cli("export", "--index", tmp_path / "nothing", "--format", "features", "--out", tmp_path / "out")
    assert result.exit_code == 1 and result.output.startswith("error: index folder") and result.output.count("\n") == 1


def test_detect_with_no_image_is_one_clear_line(tmp_path):
    result = cli("detect", tmp_path / "nothing.jpg", "--out", tmp_path / "out", "--weights", "random")
    assert result.exit_code == 1
    assert result.output.endswith(
        f"error: no image to detect in ({tmp_path / 'nothing.jpg'}: no such file or folder); "
        "give image files or folders\n"
    )
    assert not (tmp_path / "out").exists()  # refused before the output folder is made


@pytest.mark.parametrize(
    "given, message",
    [
        (
            {"classes": ("person", "persn")},
            r"^unknown class 'persn' in --classes; the detector's classes are: person, ",
        ),
        ({"classes": ("N/A",)}, r"^unknown class 'N/A' in --classes"),
        ({"max_pixels": 0}, r"^--max-pixels 0 must be at least 1$"),
        ({"min_size": 64, "max_size": 32}, r"^--max-size 32 must be at least --min-size \(64\)$"),
        ({"device": "gpu"}, r"^unknown --device 'gpu': use one of auto, cpu, cuda$"),
    ],
)
def test_detect_settings_refuse_a_bad_value_in_one_line_before_any_model(given, message):
    with pytest.raises(SettingsError, match=message):
        DetectSettings(**given)


def test_detect_settings_keep_the_classes_of_a_checkpoint_for_when_it_is_read():
    assert DetectSettings(detector="runs/any.pt", classes=["square"]).classes == ("square",)
