"""The mobilenet detectors' fast paths against plain torchvision: folded norms and fused convolutions in the
MobileNetV3 trunk (hardswish, squeeze-excitation, residual adds), and whole detections of ``FasterRCNNModel``
against torchvision's own unmodified model with the same weights."""

import copy

import numpy as np
import pytest
import torch
from torchvision.models.detection.image_list import ImageList
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.ops import box_iou
from torchvision.ops.misc import FrozenBatchNorm2d, SqueezeExcitation

from retrieval.images import load_image
from retrieval.models import FasterRCNNModel
from retrieval.models.accel.fused import (
    FusedConv,
    FusedInvertedResidual,
    FusedSqueezeExcitation,
    fuse_convolutions,
    fusion_available,
)
from retrieval.models.accel.speed import cpu_has_fast_bf16, fold_batchnorms
from retrieval.models.detectors.architectures import build_architecture
from retrieval.models.detectors.inputs import CachedAnchors, input_batch
from retrieval.models.names import COCO_CATEGORIES
from retrieval.models.weights import seeded_init
from tests.conftest import GALLERY

LIGHT = "mobilenet_v3_large_320_fpn"
MAX_OBJECTS = 10


def plain_detector(name: str, min_size: int, max_size: int) -> torch.nn.Module:
    """torchvision's model of ``name``, seeded random weights, frozen norms given real statistics (so that
    folding them changes every convolution), in eval mode."""
    with seeded_init(seed=5), torch.no_grad():
        model = build_architecture(name, min_size=min_size, max_size=max_size).eval()
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        model.roi_heads.box_predictor.cls_score.weight.mul_(20)  # scores spread out, not all near 1/91
    return model


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return load_image(GALLERY / "scene_000.jpg").rgb


def test_folded_and_fused_mobilenet_trunk_gives_the_plain_outputs():
    if not fusion_available():
        pytest.skip("this PyTorch has no oneDNN fused convolutions; the models run unfused")
    body = plain_detector(LIGHT, 320, 640).backbone.body
    folded = fold_batchnorms(copy.deepcopy(body))
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    fused = fuse_convolutions(copy.deepcopy(folded))
    shortcuts = sum(isinstance(m, InvertedResidual) and m.use_res_connect for m in body.modules())
    assert shortcuts == 10 and sum(isinstance(m, FusedInvertedResidual) for m in fused.modules()) == shortcuts
    squeezes = sum(isinstance(m, SqueezeExcitation) for m in body.modules())
    assert squeezes == 8 and sum(isinstance(m, FusedSqueezeExcitation) for m in fused.modules()) == squeezes
    activations = (torch.nn.ReLU, torch.nn.Hardswish, torch.nn.Hardsigmoid)
    assert not any(isinstance(m, activations) for m in fused.modules())  # every one applied inside a convolution
    applied = {m.activation for m in fused.modules() if isinstance(m, FusedConv)}
    assert applied == {"none", "relu", "hardswish", "hardsigmoid"}
    x = torch.rand(1, 3, 320, 416).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain = body(x)
        for name, expected in plain.items():
            scale = float(expected.abs().max())
            torch.testing.assert_close(folded(x)[name], expected, rtol=1e-4, atol=1e-5 * scale)
            torch.testing.assert_close(fused(x)[name], expected, rtol=1e-4, atol=1e-5 * scale)


def torchvision_detections(model: torch.nn.Module, image: np.ndarray) -> dict[str, torch.Tensor]:
    """torchvision's own forward (transform, backbone, RPN, heads, postprocess): boxes in original pixels."""
    with torch.inference_mode():
        (found,) = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])
    return found


def fast_and_plain(tmp_path, name: str, size: tuple[int, int], precision: str, image: np.ndarray):
    """``(ours, torchvision's)`` detections of one image: the same weights (saved, then given to
    ``FasterRCNNModel`` as a file), score threshold 0, ``MAX_OBJECTS`` kept."""
    model = plain_detector(name, *size)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    model.roi_heads.score_thresh, model.roi_heads.detections_per_img = 0.0, MAX_OBJECTS
    fast = FasterRCNNModel(
        str(tmp_path / "weights.pt"), torch.device("cpu"), *size, 0.0, MAX_OBJECTS, precision=precision, detector=name
    )
    (ours,) = fast.detect([image], with_vectors=False)
    return ours, torchvision_detections(model, image)


@pytest.mark.parametrize("name, size", [(LIGHT, (320, 640)), ("mobilenet_v3_large_fpn", (480, 800))])
def test_fast_mobilenet_detector_gives_torchvisions_detections(tmp_path, scene, name, size):
    ours, plain = fast_and_plain(tmp_path, name, size, "fp32", scene)
    assert len(ours) == len(plain["boxes"]) == MAX_OBJECTS
    np.testing.assert_allclose(ours.scores, plain["scores"].numpy(), rtol=1e-4, atol=1e-6)
    for box, score, label in zip(ours.boxes, ours.scores, ours.labels):  # in any order among equal scores
        same = [
            i
            for i, (b, s, lab) in enumerate(zip(plain["boxes"].numpy(), plain["scores"].numpy(), plain["labels"]))
            if abs(s - score) <= 1e-6 and np.abs(b - box).max() <= 0.05 and COCO_CATEGORIES[int(lab)] == label
        ]
        assert same, (box, score, label)


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="this CPU has no fast bf16: the detectors run fp32 here")
def test_bf16_mobilenet_detector_agrees_with_torchvisions_fp32(tmp_path, scene):
    ours, plain = fast_and_plain(tmp_path, LIGHT, (320, 640), "bf16", scene)
    assert len(ours) == MAX_OBJECTS
    overlap = box_iou(torch.from_numpy(ours.boxes), plain["boxes"])
    best, match = overlap.max(dim=1)
    assert float((best > 0.9).float().mean()) >= 0.8, best
    matched = best > 0.9
    np.testing.assert_allclose(ours.scores[matched], plain["scores"][match[matched]].numpy(), rtol=0.02)


def test_input_batch_gives_torchvisions_transform():
    transform = plain_detector(LIGHT, 320, 640).transform
    generator = torch.Generator().manual_seed(2)
    images = [
        torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=generator) for h, w in [(480, 640), (250, 90)]
    ]
    expected, _ = transform([image.permute(2, 0, 1).float() / 255.0 for image in images])
    for dtype, tolerance in [(torch.float32, 1e-5), (torch.bfloat16, 0.02)]:
        batch = input_batch(images, transform, dtype)
        assert batch.image_sizes == expected.image_sizes == [(320, 426), (640, 230)]
        assert batch.tensors.dtype == dtype and batch.tensors.is_contiguous(memory_format=torch.channels_last)
        assert batch.tensors.shape == expected.tensors.shape == (2, 3, 640, 448)
        torch.testing.assert_close(batch.tensors.float(), expected.tensors, rtol=tolerance, atol=tolerance)


def test_cached_anchors_are_the_generators_own_in_fp32():
    generator = plain_detector(LIGHT, 320, 640).rpn.anchor_generator
    cached = CachedAnchors(generator)
    for height, width in [(320, 448), (320, 448), (352, 320)]:
        batch = ImageList(torch.zeros(2, 3, height, width), [(height, width - 20), (height - 5, width)])
        features = [torch.zeros(2, 8, height // 2**level, width // 2**level) for level in (5, 5, 6)]  # 3 levels
        expected = generator(batch, features)
        for got in (cached(batch, features), cached(batch, [f.bfloat16() for f in features])):
            assert len(got) == 2 and all(a.dtype == torch.float32 and torch.equal(a, expected[0]) for a in got)
    assert cached.num_anchors_per_location() == generator.num_anchors_per_location() == [15, 15, 15]
