import json

import pytest

from retrieval.annotations.boxes import load_annotations
from retrieval.errors import AnnotationsError


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
