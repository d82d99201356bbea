"""Models with seeded random weights: what random weights can honestly show (shapes, norms, exact agreement)."""

import numpy as np
import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection.transform import resize_boxes
from torchvision.models.feature_extraction import create_feature_extractor

from retrieval.errors import SettingsError
from retrieval.images import load_image
from retrieval.models import FasterRCNNModel, ResNet50Embedder
from retrieval.models.detectors.architectures import COCO_WEIGHTS
from retrieval.models.detectors.faster_rcnn import COCO_CATEGORIES, build_faster_rcnn
from retrieval.models.crop_embedder import IMAGENET_MEAN, IMAGENET_STD
from retrieval.models.crops import crop_box
from retrieval.models.weights import seeded_init

from tests.conftest import GALLERY, SMALL_MAX_SIZE, SMALL_MIN_SIZE


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return load_image(GALLERY / "scene_000.jpg").rgb


def test_detect_gives_boxes_inside_the_image_with_unit_roi_vectors(detector, scene):
    (found,) = detector.detect([scene], with_vectors=True)
    height, width = scene.shape[:2]
    assert len(found) == 5  # score threshold 0 keeps max_objects detections
    assert found.boxes.dtype == np.float32 and found.boxes.shape == (5, 4)
    assert (found.boxes[:, 0] >= 0).all() and (found.boxes[:, 2] <= width).all()
    assert (found.boxes[:, 1] >= 0).all() and (found.boxes[:, 3] <= height).all()
    assert (found.boxes[:, 2] > found.boxes[:, 0]).all() and (found.boxes[:, 3] > found.boxes[:, 1]).all()
    assert all(label in COCO_CATEGORIES for label in found.labels)
    assert (np.diff(found.scores) <= 0).all()  # best first
    assert found.vectors.shape == (5, 1024)
    assert np.allclose(np.linalg.norm(found.vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(COCO_WEIGHTS))
def test_the_light_coco_class_list_is_torchvisions_for_every_detector(name):
    """``models.names.COCO_CATEGORIES`` (checked before torch loads) numbers the classes as the weights do."""
    assert list(COCO_CATEGORIES) == COCO_WEIGHTS[name].meta["categories"]
    assert len(COCO_CATEGORIES) == 91 and COCO_CATEGORIES[1] == "person" and COCO_CATEGORIES[90] == "toothbrush"


def test_detection_vectors_equal_embedding_the_detected_boxes_again(detector, scene):
    (found,) = detector.detect([scene], with_vectors=True)
    (again,) = detector.embed([scene], [found.boxes])
    cosines = (found.vectors * again).sum(axis=1)
    assert cosines.min() > 0.9999


def torchvision_box_head_output(scene: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Run torchvision's own, unmodified fp32 Faster R-CNN (same seeded weights) on ``scene`` with ``box`` as
    the only proposal, and return its box head's output for that box, L2-normalised."""
    with seeded_init():
        model = build_faster_rcnn(SMALL_MIN_SIZE, SMALL_MAX_SIZE).eval()
    captured = {}
    model.roi_heads.box_head.register_forward_hook(lambda module, args, output: captured.setdefault("out", output))

    def box_as_proposal(images, features, targets=None):
        (resized_hw,) = images.image_sizes
        return [resize_boxes(torch.from_numpy(box), list(scene.shape[:2]), list(resized_hw))], {}

    model.rpn.forward = box_as_proposal
    with torch.inference_mode():
        model([torch.from_numpy(scene).permute(2, 0, 1).float() / 255.0])
    return torch.nn.functional.normalize(captured["out"], dim=1).numpy()


def test_roi_embedding_equals_torchvisions_own_box_head_on_that_box(scene):
    box = np.array([[120.0, 40.0, 260.0, 200.0]], dtype=np.float32)
    expected = torchvision_box_head_output(scene, box)
    fp32 = FasterRCNNModel("random", torch.device("cpu"), SMALL_MIN_SIZE, SMALL_MAX_SIZE, precision="fp32")
    (ours,) = fp32.embed([scene], [box])
    assert ours.shape == (1, 1024)
    np.testing.assert_allclose(ours, expected, atol=2e-5)  # batch norms folded: fp32 rounding only


def test_class_filter_keeps_only_those_classes(scene):
    person_only = FasterRCNNModel(
        "random", torch.device("cpu"), SMALL_MIN_SIZE, SMALL_MAX_SIZE, 0.0, 3, classes=("person",)
    )
    (found,) = person_only.detect([scene], with_vectors=False)
    assert len(found) == 3 and set(found.labels) == {"person"} and found.vectors is None


def test_unknown_class_is_a_clear_error():
    with pytest.raises(
        SettingsError, match="unknown class .bottel. in --classes; the detector.s classes are: person, bicycle"
    ):
        FasterRCNNModel("random", torch.device("cpu"), classes=("bottel",))


def test_embedding_no_boxes_gives_empty_arrays(detector, resnet, scene):
    empty = np.zeros((0, 4), dtype=np.float32)
    assert detector.embed([scene], [empty])[0].shape == (0, 1024)
    assert resnet.embed([scene], [empty])[0].shape == (0, 2048)


def test_crop_is_widened_to_whole_pixels_and_squashed_to_224():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[10:30, 50:60] = (200, 100, 50)
    crop = crop_box(image, (50.2, 10.7, 59.5, 29.1), 224)
    assert crop.shape == (224, 224, 3)
    assert (crop.reshape(-1, 3) == (200, 100, 50)).all()


def test_resnet50_vector_is_the_normalised_global_average_pool_of_the_crop(scene):
    boxes = np.array([[10, 20, 200, 300], [300, 100, 420, 180]], dtype=np.float32)
    (ours,) = ResNet50Embedder("random", torch.device("cpu"), precision="fp32").embed([scene], [boxes])
    assert ours.shape == (2, 2048)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    with seeded_init():
        reference = resnet50(weights=None).eval()
    gap = create_feature_extractor(reference, {"avgpool": "gap"})
    crops = torch.from_numpy(np.stack([crop_box(scene, b, 224) for b in boxes])).permute(0, 3, 1, 2).float() / 255.0
    crops = (crops - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(gap(crops)["gap"].flatten(1), dim=1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_embedders_are_deterministic_across_fresh_loads(resnet, scene):
    box = np.array([[0, 0, 100, 100]], dtype=np.float32)
    again = ResNet50Embedder("random", torch.device("cpu"))
    assert again.identity == resnet.identity
    np.testing.assert_array_equal(again.embed([scene], [box])[0], resnet.embed([scene], [box])[0])
