import json

import numpy as np
import pytest
from PIL import Image

from retrieval.annotations import load_annotations
from retrieval.errors import AnnotationsError
from retrieval.training.data import load_detection_data


def write_coco(path, annotations, images=None):
    images = images or [{"id": 1, "file_name": "shelf/a.jpg", "width": 100, "height": 80}]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 3, "name": "can"}]})
    )
    return path


def test_coco_boxes_become_pixel_corners_with_names(tmp_path):
    coco = write_coco(tmp_path / "a.json", [{"image_id": 1, "bbox": [10, 20, 30, 40], "category_id": 3}])
    objects = load_annotations(coco).objects_for("shelf/a.jpg", 100, 80)
    assert objects.boxes.tolist() == [[10, 20, 40, 60]]
    assert objects.labels == ["can"]
    assert len(objects.scores) == 1 and objects.scores[0] != objects.scores[0]  # NaN: not detected


def test_coco_image_without_annotations_and_unknown_images_have_no_objects(tmp_path):
    coco = write_coco(tmp_path / "a.json", [])
    annotations = load_annotations(coco)
    assert len(annotations.objects_for("shelf/a.jpg", 100, 80)) == 0
    assert len(annotations.objects_for("other.jpg", 100, 80)) == 0
    assert annotations.key_for("other.jpg") == annotations.key_for("shelf/a.jpg")  # both: no boxes


def test_coco_matches_a_unique_bare_file_name(tmp_path):
    coco = write_coco(
        tmp_path / "a.json",
        [{"image_id": 1, "bbox": [0, 0, 5, 5], "category_id": 3}],
        images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
    )
    assert len(load_annotations(coco).objects_for("deep/folder/a.jpg", 100, 80)) == 1


@pytest.mark.parametrize(
    "annotation, message",
    [
        (
            {"image_id": 1, "bbox": [10, 20, -3, 40], "category_id": 3},
            "annotations[0] bbox [10, 20, -3, 40] has zero or negative size",
        ),
        (
            {"image_id": 1, "bbox": [90, 20, 30, 40], "category_id": 3},
            "annotations[0] bbox [90, 20, 30, 40] lies outside image shelf/a.jpg (100x80 pixels)",
        ),
        (
            {"image_id": 7, "bbox": [1, 1, 2, 2], "category_id": 3},
            "annotations[0] has image_id 7, which no images[] entry has",
        ),
        (
            {"image_id": 1, "bbox": "1,2,3,4", "category_id": 3},
            "annotations[0] bbox '1,2,3,4' must be [x, y, width, height] numbers",
        ),
    ],
)
def test_bad_coco_entries_are_named(tmp_path, annotation, message):
    coco = write_coco(tmp_path / "a.json", [annotation])
    with pytest.raises(AnnotationsError) as error:
        load_annotations(coco)
    assert message in str(error.value)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"images": [\n  {"id": 1,, }\n]}')
    with pytest.raises(AnnotationsError, match="is not valid JSON: .* at line 2"):
        load_annotations(path)


def test_yolo_lines_become_pixel_boxes_with_class_names(tmp_path):
    labels = tmp_path / "labels"
    (labels / "shelf").mkdir(parents=True)
    (labels / "shelf" / "a.txt").write_text("1 0.5 0.5 0.2 0.5\n\n0 0.1 0.1 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("names: [bottle, can]\n")
    objects = load_annotations(labels).objects_for("shelf/a.jpg", 200, 100)
    assert objects.boxes.ravel().tolist() == pytest.approx([80, 25, 120, 75, 0, 0, 40, 20])
    assert objects.labels == ["can", "bottle"]


def test_yolo_without_names_uses_class_numbers(tmp_path):
    (tmp_path / "a.txt").write_text("4 0.5 0.5 1 1\n")
    objects = load_annotations(tmp_path).objects_for("a.png", 10, 10)
    assert objects.labels == ["4"] and objects.boxes.tolist() == [[0, 0, 10, 10]]


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2", "line 2: expected 'class cx cy w h'"),
        ("x 0.5 0.5 0.2 0.2", "line 2: expected an integer class and four numbers"),
        ("0 0.5 0.5 -0.2 0.2", "line 2: box size must be positive"),
        ("0 0.95 0.5 0.2 0.2", "line 2: box '0 0.95 0.5 0.2 0.2' lies outside the image"),
        ("5 0.5 0.5 0.2 0.2", "line 2: class 5 is not among the 2 class names"),
    ],
)
def test_bad_yolo_lines_name_file_and_line(tmp_path, line, message):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "img.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(AnnotationsError) as error:
        load_annotations(tmp_path)
    assert f"{tmp_path / 'img.txt'} {message}" in str(error.value)


def test_missing_annotations_path(tmp_path):
    with pytest.raises(AnnotationsError, match="not found: give a COCO JSON file or a YOLO labels folder"):
        load_annotations(tmp_path / "nothing.json")


def test_a_foldered_entry_names_only_its_own_path(tmp_path):
    coco = write_coco(tmp_path / "a.json", [{"image_id": 1, "bbox": [0, 0, 5, 5], "category_id": 3}])
    annotations = load_annotations(coco)  # file_name shelf/a.jpg
    assert annotations.names("shelf/a.png") and not annotations.names("other/a.jpg")
    with pytest.raises(AnnotationsError, match="1 annotated images are not in the gallery G: images\\[0\\]"):
        annotations.check_images_exist(["other/a.jpg"], "G")


def _picture(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


def test_one_coco_file_gives_the_same_pixel_boxes_to_indexing_and_training(tmp_path):
    """The same COCO file as ``--annotations`` of a gallery and as a training split: the same boxes."""
    images = [
        {"id": 1, "file_name": "shelf/a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 60, "height": 40},
    ]
    boxes = [
        {"image_id": 1, "bbox": [10.5, 20, 30, 40], "category_id": 3},
        {"image_id": 1, "bbox": [0, 0, 100, 80], "category_id": 3},
        {"image_id": 2, "bbox": [5, 6, 7, 8], "category_id": 3},
    ]
    root = tmp_path / "data"
    for entry in images:
        _picture(root / "images" / entry["file_name"], (entry["width"], entry["height"]))
    for split in ("train", "val"):
        write_coco(root / f"{split}.json", boxes, images=images)
    annotations = load_annotations(root / "train.json")
    data = load_detection_data(root)
    assert data.classes == ["can"] and [s.path.relative_to(root / "images").as_posix() for s in data.train] == [
        "b.jpg",
        "shelf/a.jpg",
    ]
    for sample in data.train:
        rel_path = sample.path.relative_to(root / "images").as_posix()
        width, height = Image.open(sample.path).size
        given = annotations.objects_for(rel_path, width, height)
        np.testing.assert_array_equal(sample.boxes, given.boxes)
        assert sample.labels.tolist() == [1] * len(given) and given.labels == ["can"] * len(given)
    assert data.train[1].boxes.tolist() == [[10.5, 20, 40.5, 60], [0, 0, 100, 80]]


def test_one_yolo_labels_folder_gives_the_same_pixel_boxes_to_indexing_and_training(tmp_path):
    """``labels/`` beside ``images/`` as a training dataset, and as ``--annotations`` of ``images/``."""
    root = tmp_path / "data"
    sizes = {"train/a.png": (200, 100), "train/deep/b.png": (64, 48), "val/c.png": (50, 50)}
    lines = {"train/a": "1 0.5 0.5 0.2 0.5\n0 0.1 0.1 0.2 0.2\n", "train/deep/b": "0 0.5 0.5 1 1\n", "val/c": ""}
    for rel_path, size in sizes.items():
        _picture(root / "images" / rel_path, size)
    for key, text in lines.items():
        (root / "labels" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{key}.txt").write_text(text)
    (root / "classes.txt").write_text("bottle\ncan\n")
    annotations = load_annotations(root / "labels")  # names from ../classes.txt
    data = load_detection_data(root)
    assert len(data.train) == 2 and len(data.val) == 1
    for sample in data.train + data.val:
        rel_path = sample.path.relative_to(root / "images").as_posix()
        given = annotations.objects_for(rel_path, *sizes[rel_path])
        np.testing.assert_array_equal(sample.boxes, given.boxes)
        assert [data.classes[label - 1] for label in sample.labels] == given.labels
    assert data.train[0].boxes.ravel().tolist() == pytest.approx([80, 25, 120, 75, 0, 0, 40, 20])
    assert data.train[1].boxes.tolist() == [[0, 0, 64, 48]] and data.val[0].boxes.shape == (0, 4)
