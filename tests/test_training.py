"""Fine-tuning a detector (train-detector), judging it (evaluate-detector) and indexing with it, on a small
synthetic YOLO dataset of coloured shapes (retrieval/testing/shapes.py). Random starting weights: the
tests check what a few steps can show (the loss falls), not accuracy."""

import contextlib
import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.models.detection.transform import resize_boxes

from retrieval import Searcher
from retrieval.cli.main import main
from retrieval.errors import AnnotationsError, WeightsError
from retrieval.images import load_image
from retrieval.models import FasterRCNNModel
from retrieval.models.detectors.architectures import DETECTOR_NAMES, build_architecture
from retrieval.models.detectors.checkpoint import model_from_checkpoint, read_checkpoint
from retrieval.models.weights import seeded_init
from retrieval.training.data import load_detection_data
from retrieval.training.evaluate import predict, score
from retrieval.training.metrics import ImageDetections, coco_map
from retrieval.training.train import TrainingImages, TrainSettings, output_paths, train_detector, warmup_schedule

from tests.conftest import GALLERY
from retrieval.testing.shapes import CLASSES, SIZE, write_yolo_dataset
from retrieval.testing.rows import all_rows

FAST = dict(detector="mobilenet_v3_large_fpn", weights="random", min_size=160, max_size=240, lr=0.01, workers=0)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_yolo_dataset(tmp_path_factory.mktemp("shapes") / "data")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "shapes.pt"
    history = train_detector(dataset, out, TrainSettings(epochs=2, **FAST), progress=False)
    return out, history


def test_yolo_labels_become_pixel_boxes_and_unlabelled_images_negatives(dataset):
    data = load_detection_data(dataset)
    assert data.classes == CLASSES and len(data.train) == 8 and len(data.val) == 4
    first = data.train[0]
    line = (dataset / "labels/train/train_000.txt").read_text().splitlines()[0].split()
    cx, cy, w, h = (float(v) for v in line[1:])
    width, height = SIZE
    expected = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
    np.testing.assert_allclose(first.boxes[0], expected, atol=1e-3)
    assert first.labels[0] == int(line[0]) + 1
    assert data.train[-1].boxes.shape == (0, 4) and data.train[-1].labels.shape == (0,)  # no label file


def test_bad_datasets_name_the_file_and_line(dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "labels/train/train_001.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationsError, match=r"train_001.txt line 2: class 7 is not among the 3 class names"):
        load_detection_data(broken)
    (broken / "labels/train/train_001.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(AnnotationsError, match=r"train_001.txt line 1: expected 'class cx cy w h'"):
        load_detection_data(broken)
    (broken / "data.yaml").write_text("train: images/train\nnames: [a, b, c]\n")
    with pytest.raises(AnnotationsError, match=r"data.yaml has no 'val:' entry"):
        load_detection_data(broken)


def test_coco_datasets_load_the_same_samples(dataset, tmp_path):
    data = load_detection_data(dataset)
    coco = tmp_path / "coco"
    shutil.copytree(dataset / "images", coco / "images")
    for split, samples in (("train", data.train), ("val", data.val)):
        document = {
            "images": [],
            "annotations": [],
            "categories": [{"id": i + 10, "name": n} for i, n in enumerate(CLASSES)],
        }
        for number, sample in enumerate(samples, start=1):
            document["images"].append({"id": number, "file_name": f"{split}/{sample.path.name}"})
            for box, label in zip(sample.boxes.tolist(), sample.labels.tolist()):
                x1, y1, x2, y2 = box
                document["annotations"].append(
                    {
                        "id": len(document["annotations"]) + 1,
                        "image_id": number,
                        "category_id": label + 9,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                    }
                )
        (coco / f"{split}.json").write_text(json.dumps(document))
    again = load_detection_data(coco)
    assert again.classes == CLASSES
    for a, b in zip(data.train + data.val, again.train + again.val):
        assert a.path.name == b.path.name and np.array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)


def test_a_few_epochs_lower_the_loss_and_write_checkpoints_and_logs(trained):
    out, history = trained
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    paths = output_paths(out)
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0, path
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and float(rows[1]["loss"]) == pytest.approx(history[1]["loss"])
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "mAP", "mAP50", "f1"} <= set(
        rows[0]
    )
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_lr_from_random_weights_warms_up_and_stays_finite_in_epoch_one(dataset, tmp_path):
    """torchvision's warm-up: the lr starts at lr/1000 and reaches lr after the epoch's steps - 1 (here 3 of 4)."""
    settings = TrainSettings(**{**FAST, "lr": TrainSettings.lr, "epochs": 1})
    assert settings.lr == 0.005 and (settings.warmup_iters, settings.warmup_factor) == (1000, 0.001)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    warmup = warmup_schedule(optimizer, settings, steps_per_epoch=4)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        warmup.step()
    assert rates == pytest.approx([0.005 * 0.001, 0.005 * (0.001 + 0.999 / 3), 0.005 * (0.001 + 2 * 0.999 / 3), 0.005])
    history = train_detector(dataset, tmp_path / "warm.pt", settings, progress=False)
    row = history[0]
    assert all(np.isfinite(row[name]) for name in ("loss", "loss_classifier", "loss_box_reg", "loss_objectness"))
    assert row["lr_start"] == pytest.approx(0.005 * 0.001) and row["lr"] == pytest.approx(0.005)
    with open(output_paths(tmp_path / "warm.pt")["csv"], newline="") as handle:
        logged = next(csv.DictReader(handle))
    assert float(logged["lr_start"]) < float(logged["lr"]) == pytest.approx(0.005)  # the log shows the rise
    assert read_checkpoint(tmp_path / "warm.pt")["settings"]["warmup_iters"] == 1000


def test_a_checkpoint_round_trips(trained, dataset):
    out, _ = trained
    payload = torch.load(out, weights_only=True)  # nothing but tensors and plain values
    assert payload["classes"] == CLASSES and payload["detector"] == "mobilenet_v3_large_fpn"
    model = model_from_checkpoint(read_checkpoint(out), out)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, payload["model"][name]), name
    last = torch.load(output_paths(out)["last"], weights_only=True)
    assert "optimizer" in last and len(last["history"]) == 2
    plain = torch.zeros(1)
    torch.save({"weights": plain}, out.parent / "plain.pt")
    with pytest.raises(WeightsError, match="plain.pt is a plain state_dict, not a detector checkpoint"):
        read_checkpoint(out.parent / "plain.pt")


def test_resume_continues_after_the_last_epoch(trained, dataset, tmp_path):
    out, history = trained
    copy = tmp_path / "shapes.pt"
    for key, path in output_paths(out).items():
        shutil.copy(path, output_paths(copy)[key])
    resumed = train_detector(dataset, copy, TrainSettings(epochs=3, **FAST), resume=True, progress=False)
    assert [row["epoch"] for row in resumed] == [1, 2, 3] and resumed[:2] == history


def test_map_equals_pycocotools_on_the_same_predictions(trained, dataset):
    out, _ = trained
    data = load_detection_data(dataset)
    detections = predict(model_from_checkpoint(read_checkpoint(out), out), data.val, torch.device("cpu"))
    assert sum(len(d.scores) for d in detections) > 0
    noisy = _noisy_detections(np.random.default_rng(1))  # and where AP is far from 0
    for images in (detections, noisy):
        ours = coco_map(images, len(CLASSES))
        stats = _pycocotools(images)
        assert ours["mAP"] == pytest.approx(stats[0], abs=1e-12) and ours["mAP50"] == pytest.approx(stats[1], abs=1e-12)
    assert coco_map(noisy, 3)["mAP50"] > 0.2
    report = score(detections, CLASSES, 0.05)
    assert set(report["per_class"]) == set(CLASSES) and 0 <= report["overall"]["f1"] <= 1


def test_evaluate_detector_command(trained, dataset, tmp_path):
    out, _ = trained
    result = cli(
        "evaluate-detector",
        "--data",
        dataset,
        "--checkpoint",
        out,
        "--json",
        "--quiet",
        "--score-threshold",
        0.05,
        "--save-vis",
        tmp_path / "pictures",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 4 and set(report["per_class"]) == set(CLASSES)
    gt = sum(row["ground_truth"] for row in report["per_class"].values())
    assert gt == report["overall"]["ground_truth"] == sum(len(s.labels) for s in load_detection_data(dataset).val)
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == [f"val_{i:03d}.jpg" for i in range(4)]
    table = cli("evaluate-detector", "--data", dataset, "--checkpoint", out, "--quiet")
    assert table.exit_code == 0 and "mAP@[.5:.95]" in table.output and "square" in table.output


def test_index_with_the_fine_tuned_detector(trained, dataset, tmp_path):
    out, _ = trained
    gallery = dataset / "images" / "val"
    index = tmp_path / "index"
    size = ["--min-size", 160, "--max-size", 240]
    result = cli(
        "index",
        gallery,
        "--index",
        index,
        "--detector",
        out,
        "--score-threshold",
        0,
        "--max-objects",
        3,
        *size,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    info = json.loads(cli("info", "--index", index, "--json").output)
    assert info["objects"] == 12
    detector = info["manifest"]["detector"]
    assert detector["name"] == "fasterrcnn_mobilenet_v3_large_fpn"
    assert detector["weights"]["source"] == "checkpoint" and detector["weights"]["classes"] == CLASSES
    assert len(detector["weights"]["sha256"]) == 64
    searcher = Searcher(index, device="cpu")
    snapshot = searcher.snapshot
    table = all_rows(snapshot)
    assert set(table.labels) <= set(CLASSES)
    for row in (0, 7):
        image = snapshot.gallery_root / table.image_paths[int(table.object_image[row])]
        results = searcher.query(image, table.boxes[row].tolist(), top_k=12, group="object")
        own = next(r for r in results if r.object_id == int(table.object_ids[row]))
        assert own.score > 0.999 and own.score >= results[0].score - 1e-5  # a barely trained detector: ties
    # the roi vectors are the checkpoint model's own box-head output (plain torchvision, fp32)
    model = model_from_checkpoint(read_checkpoint(out), out, 160, 240).eval()
    fast = FasterRCNNModel("default", torch.device("cpu"), 160, 240, precision="fp32", detector=str(out))
    image = searcher.snapshot.gallery_root / table.image_paths[int(table.object_image[0])]
    rgb = load_image(image).rgb
    boxes = table.boxes[table.object_image == table.object_image[0]]
    with torch.no_grad():
        batch, _ = model.transform([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])
        resized = resize_boxes(torch.from_numpy(boxes), list(rgb.shape[:2]), list(batch.image_sizes[0]))
        features = model.backbone(batch.tensors)
        pooled = model.roi_heads.box_head(model.roi_heads.box_roi_pool(features, [resized], batch.image_sizes))
    expected = F.normalize(pooled, dim=1).numpy()
    np.testing.assert_allclose(fast.embed([rgb], [boxes])[0], expected, atol=1e-4)
    wrong = cli("index", gallery, "--index", tmp_path / "other", "--detector", out, "--classes", "person", *size)
    assert wrong.exit_code == 1 and "the detector's classes are: square, disc, bar" in wrong.output


def _noisy_detections(rng) -> list[ImageDetections]:
    images = []
    for _ in range(20):
        count = int(rng.integers(0, 5))
        corner = rng.uniform(0, 100, (count, 2))
        gt = np.hstack([corner, corner + rng.uniform(10, 60, (count, 2))]).astype(np.float32)
        gt_labels = rng.integers(1, 4, count)
        source = rng.integers(0, max(count, 1), 8)
        boxes = (gt[source] if count else np.tile([[0, 0, 20, 20]], (8, 1))) + rng.normal(0, 5, (8, 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = gt_labels[source] if count else rng.integers(1, 4, 8)
        images.append(ImageDetections(gt, gt_labels, boxes.astype(np.float32), np.round(rng.random(8), 2), labels))
    return images


def _pycocotools(images: list[ImageDetections]) -> np.ndarray:
    truth = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(1, len(CLASSES) + 1)]}
    results = []
    for number, image in enumerate(images, start=1):
        truth["images"].append({"id": number})
        for (x1, y1, x2, y2), label in zip(image.gt_boxes.tolist(), image.gt_labels.tolist()):
            truth["annotations"].append(
                {
                    "id": len(truth["annotations"]) + 1,
                    "image_id": number,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for (x1, y1, x2, y2), s, label in zip(image.boxes.tolist(), image.scores.tolist(), image.labels.tolist()):
            results.append(
                {"image_id": number, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = truth
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_every_stock_detector_embeds_boxes_as_its_own_box_head(name):
    """Random weights: the fast path's roi vectors (folded norms, channels-last ROI align) equal the plain
    torchvision model's for the same boxes, whatever the architecture."""
    rgb = load_image(GALLERY / "scene_000.jpg").rgb
    boxes = np.array([[10, 20, 200, 240], [300, 50, 420, 300], [0, 0, 640, 480]], np.float32)
    fast = FasterRCNNModel("random", torch.device("cpu"), 320, 533, precision="fp32", detector=name)
    assert fast.architecture == name and fast.categories[1] == "person"
    with seeded_init():
        plain = build_architecture(name, 91, 320, 533).eval()
    with torch.no_grad():
        batch, _ = plain.transform([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])
        resized = resize_boxes(torch.from_numpy(boxes), list(rgb.shape[:2]), list(batch.image_sizes[0]))
        features = plain.backbone(batch.tensors)
        pooled = plain.roi_heads.box_head(plain.roi_heads.box_roi_pool(features, [resized], batch.image_sizes))
    vectors = fast.embed([rgb], [boxes])[0]
    assert vectors.shape == (3, 1024)
    np.testing.assert_allclose(vectors, F.normalize(pooled, dim=1).numpy(), atol=2e-5)


def test_augmentation_flips_boxes_with_the_image_and_keeps_them_inside(dataset):
    data = load_detection_data(dataset)
    images = TrainingImages(data.train[:1])
    torch.manual_seed(0)
    flipped_once = False
    for _ in range(12):
        image, target = images[0]
        assert image.shape == (3, SIZE[1], SIZE[0]) and 0 <= float(image.min()) and float(image.max()) <= 1
        boxes, original = target["boxes"].numpy(), data.train[0].boxes
        assert target["labels"].tolist() == data.train[0].labels.tolist()
        mirrored = np.stack([SIZE[0] - original[:, 2], original[:, 1], SIZE[0] - original[:, 0], original[:, 3]], 1)
        if np.allclose(boxes, mirrored, atol=1e-3) and not np.allclose(boxes, original, atol=1e-3):
            flipped_once = True
            x1, y1, x2, y2 = (int(round(v)) for v in boxes[0])
            shape = image[:, y1:y2, x1:x2]  # the shape's colour is now where the flipped box says
            assert float((shape.max(0).values - shape.min(0).values).mean()) > 0.2
        else:
            np.testing.assert_allclose(boxes, original, atol=1e-3)
    assert flipped_once
