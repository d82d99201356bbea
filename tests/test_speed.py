"""Every fast path against the plain path it replaces: folded norms, fused convolutions, channels-last ROI
align, the NMS shortcut, bf16 against fp32, batched against one by one."""

import copy
import glob
import json

import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v2, resnet50
from torchvision.ops import MultiScaleRoIAlign

from retrieval import IndexSettings, Searcher, build_index
from retrieval.errors import SettingsError
from retrieval.images import load_image
from retrieval.models import FasterRCNNModel, ResNet50Embedder
from retrieval.models.backbones.efficientnet_lite import build_lite_trunk
from retrieval.models.detectors.faster_rcnn import build_faster_rcnn
from retrieval.models.accel.fused import ACTIVATIONS, FusedConv, fuse_convolutions, fusion_available
from retrieval.models.detectors.postprocess import top_detections
from retrieval.models.accel.roi_align import ChannelsLastRoIAlign, roi_pooler_for
from retrieval.models.accel.speed import (
    Cast,
    cpu_has_fast_bf16,
    fold_batchnorms,
    resolve_precision,
    to_inference_layout,
)
from retrieval.models.weights import seeded_init
from retrieval.pipeline.reader import prefetched

from tests.conftest import GALLERY, RANDOM_WHOLE, SMALL_MAX_SIZE, SMALL_MIN_SIZE, copy_demo_images


def centred_cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Cosine of each row pair after removing the reference rows' mean (random-weight vectors share a
    large common part that makes plain cosines near 1 whatever the rest does)."""
    mean = reference.mean(axis=0)
    a, b = reference - mean, other - mean
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_folding_batch_norms_keeps_resnet50_outputs():
    with seeded_init(seed=3):
        model = resnet50(weights=None).eval()
        for module in model.modules():  # give the norms real statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        plain = model(x)
        folded = fold_batchnorms(model)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-4)


def test_folding_frozen_batch_norms_keeps_the_detector_backbone_outputs():
    with seeded_init():
        model = build_faster_rcnn(SMALL_MIN_SIZE, SMALL_MAX_SIZE).eval()
    x = torch.rand(1, 3, 320, 448)
    with torch.inference_mode():
        plain = model.backbone(x)
        fold_batchnorms(model.backbone.body)
        folded = model.backbone(x)
    for name in plain:
        torch.testing.assert_close(folded[name], plain[name], rtol=1e-4, atol=1e-3)


def random_boxes(count: int, generator: torch.Generator, width: float, height: float) -> torch.Tensor:
    """``(count, 4)`` boxes of many sizes, some reaching past the image's edges, some thinner than a cell."""
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width + 60, height + 60]) - 50
    size = torch.rand(count, 2, generator=generator) ** 2 * torch.tensor([width, height]) * 0.8 + 0.5
    return torch.cat([corner, corner + size], dim=1)


def test_channels_last_roi_align_gives_torchvisions_multiscale_roi_align():
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    generator = torch.Generator().manual_seed(0)
    features = {
        str(level): torch.randn(2, 32, 160 // 2**level, 224 // 2**level, generator=generator).contiguous(
            memory_format=torch.channels_last
        )
        for level in range(4)
    }
    sizes = [(640, 896), (620, 880)]
    boxes = [random_boxes(400, generator, 896, 640), random_boxes(250, generator, 880, 620)]
    boxes[0][:3] = torch.tensor([[0.0, 0.0, 896.0, 640.0], [-10.0, -10.0, -2.0, -3.0], [900.0, 10.0, 990.0, 50.0]])
    expected = pooler(features, boxes, sizes)
    ours = ChannelsLastRoIAlign(pooler)
    torch.testing.assert_close(ours(features, boxes, sizes), expected, rtol=0, atol=1e-5)
    contiguous = {name: value.contiguous() for name, value in features.items()}
    torch.testing.assert_close(ours(contiguous, boxes, sizes), expected, rtol=0, atol=1e-5)
    empty = ours(features, [torch.zeros(0, 4), torch.zeros(0, 4)], sizes)
    assert empty.shape == (0, 32, 7, 7)
    bf16 = ours({name: value.bfloat16() for name, value in features.items()}, boxes, sizes)
    assert bf16.dtype == torch.bfloat16
    assert (bf16.float() - expected).norm() / expected.norm() < 0.01


def test_cuda_keeps_torchvisions_roi_align_and_the_cpu_gets_the_channels_last_one():
    pooler = MultiScaleRoIAlign(["0", "1"], 7, 2)
    cuda = torch.device("cuda")  # only chosen for, never run: no GPU needed
    assert roi_pooler_for(pooler, cuda, torch.float32) is pooler
    half = roi_pooler_for(pooler, cuda, torch.bfloat16)
    assert isinstance(half, Cast) and half.module is pooler and half.dtype == torch.float32
    assert type(roi_pooler_for(pooler, torch.device("cpu"), torch.bfloat16)) is ChannelsLastRoIAlign
    generator = torch.Generator().manual_seed(1)
    features = {str(level): torch.randn(1, 8, 40 // 2**level, 48 // 2**level, generator=generator) for level in (0, 1)}
    boxes, sizes = [random_boxes(30, generator, 192, 160)], [(160, 192)]
    bf16 = {name: value.bfloat16() for name, value in features.items()}
    pooled = half(bf16, boxes, sizes)  # bf16 features, fp32 boxes: torchvision's kernel on fp32 copies
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, pooler({k: v.float() for k, v in bf16.items()}, boxes, sizes))


def test_fused_convolutions_give_the_unfused_resnet50_outputs():
    if not fusion_available():
        pytest.skip("this PyTorch has no oneDNN fused convolutions; the models run unfused")
    with seeded_init(seed=1):
        model = fold_batchnorms(resnet50(weights=None).eval())
    fused = fuse_convolutions(copy.deepcopy(model))
    assert sum(isinstance(m, FusedConv) for m in fused.modules()) == 53  # every convolution
    x = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
        channels_last = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fused(channels_last), model(x), rtol=1e-4, atol=1e-4)


def test_fused_convolutions_give_the_unfused_detector_backbone_and_rpn_head():
    if not fusion_available():
        pytest.skip("this PyTorch has no oneDNN fused convolutions; the models run unfused")
    with seeded_init():
        model = build_faster_rcnn(SMALL_MIN_SIZE, SMALL_MAX_SIZE).eval()
    fold_batchnorms(model.backbone.body)
    fused_body = fuse_convolutions(copy.deepcopy(model.backbone.body))
    fused_head = fuse_convolutions(copy.deepcopy(model.rpn.head))
    assert isinstance(fused_head.conv[0][0], FusedConv)
    x = torch.rand(1, 3, 320, 448)

    def assert_close(got, expected):  # oneDNN may pick kernels that sum in another order: fp32 rounding
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))

    with torch.inference_mode():
        plain, fused = model.backbone.body(x), fused_body(x)
        for name in plain:
            assert_close(fused[name], plain[name])
        levels = list(model.backbone.fpn(plain).values())
        for expected, got in zip(model.rpn.head(levels), fused_head(levels)):
            for e, g in zip(expected, got):
                assert_close(g, e)


def test_a_convolution_fused_with_relu6_clips_at_both_bounds():
    if not fusion_available():
        pytest.skip("this PyTorch has no oneDNN fused convolutions; the models run unfused")
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=True)
    x = torch.randn(2, 4, 9, 11, generator=torch.Generator().manual_seed(0)) * 20
    with torch.inference_mode():
        expected = torch.nn.functional.relu6(conv(x))
        got = FusedConv(conv, *ACTIVATIONS[torch.nn.ReLU6])(x)
    assert (expected == 0).any() and (expected == 6).any() and ((expected > 0) & (expected < 6)).any()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", [224, 225])  # 225: TensorFlow's SAME pads the odd pixel right and bottom
def test_fused_convolutions_give_the_unfused_efficientnet_lite_outputs(side):
    """EfficientNet-Lite0 with its ImageNet weights (installed with the package): activations that reach
    ReLU6's bound, every convolution fused, the same features in fp32 and close ones in bf16."""
    if not fusion_available():
        pytest.skip("this PyTorch has no oneDNN fused convolutions; the models run unfused")
    model = fold_batchnorms(build_lite_trunk("lite0", "default").module.eval())
    fused = fuse_convolutions(copy.deepcopy(model))
    assert sum(isinstance(m, FusedConv) for m in fused.modules()) == 49  # every convolution
    assert not any(isinstance(m, torch.nn.ReLU6) for m in fused.modules())
    x = torch.rand(3, 3, side, side, generator=torch.Generator().manual_seed(side)) * 2 - 1
    with torch.inference_mode():
        expected = model(x)
        assert (expected == 6).any()
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)
        fast = to_inference_layout(fused, torch.bfloat16)
        got = fast(x.bfloat16().contiguous(memory_format=torch.channels_last)).float()
    cosines = torch.nn.functional.cosine_similarity(got.flatten(1), expected.flatten(1))
    assert cosines.min() > 0.99


def test_fused_convolutions_give_the_unfused_mobilenet_v2_outputs():
    """torchvision's MobileNetV2 (a zoo trunk): each convolution → ReLU6 of its ``Conv2dNormActivation``s fused."""
    if not fusion_available():
        pytest.skip("this PyTorch has no oneDNN fused convolutions; the models run unfused")
    with seeded_init(seed=2):
        model = fold_batchnorms(mobilenet_v2(weights=None).features.eval())
    fused = fuse_convolutions(copy.deepcopy(model))
    assert sum(m.activation == "hardtanh" for m in fused.modules() if isinstance(m, FusedConv)) == 35
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threshold", [0.0, 0.02, 0.5])
def test_nms_shortcut_gives_torchvisions_detections(detector, threshold):
    heads = detector.model.roi_heads
    generator = torch.Generator().manual_seed(int(threshold * 100))
    proposals = [torch.rand(400, 2, generator=generator) * 250 for _ in range(2)]
    proposals = [torch.cat([p, p + 10 + torch.rand(400, 2, generator=generator) * 60], dim=1) for p in proposals]
    logits = torch.randn(800, 91, generator=generator) * 3
    regression = torch.randn(800, 364, generator=generator) * 0.1
    sizes = [(320, 320), (320, 320)]
    heads.score_thresh, heads.detections_per_img = threshold, 7
    try:
        expected = heads.postprocess_detections(logits, regression, proposals, sizes)
        ours = top_detections(heads, logits, regression, proposals, sizes, 7)
        person_cup = torch.tensor([1, 47])
        ours_filtered = top_detections(heads, logits, regression, proposals, sizes, 7, person_cup)
        heads.detections_per_img = 100_000
        unlimited = heads.postprocess_detections(logits, regression, proposals, sizes)
    finally:
        heads.score_thresh, heads.detections_per_img = 0.0, 100
    for (boxes, scores, labels), exp_boxes, exp_scores, exp_labels in zip(ours, *expected):
        assert torch.equal(labels, exp_labels) and torch.equal(scores, exp_scores) and torch.equal(boxes, exp_boxes)
    for (boxes, scores, labels), all_boxes, all_scores, all_labels in zip(ours_filtered, *unlimited):
        wanted = torch.isin(all_labels, person_cup)
        assert torch.equal(labels, all_labels[wanted][:7]) and torch.equal(boxes, all_boxes[wanted][:7])


def photos() -> list[np.ndarray]:
    """Real photos when the grocery folder is there, else the demo scenes."""
    paths = sorted(glob.glob(str(GALLERY.parent.parent / "shared/data/grocery/val/*/*/*.jpg")))[::37][:8]
    return [load_image(p).rgb for p in paths or sorted(GALLERY.glob("*.jpg"))[:8]]


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="this CPU has no fast bf16: auto precision is fp32 here")
def test_bf16_embeddings_agree_with_fp32_for_the_same_boxes():
    images = photos()
    cpu = torch.device("cpu")
    detector32 = FasterRCNNModel("random", cpu, SMALL_MIN_SIZE, SMALL_MAX_SIZE, 0.0, 5, precision="fp32")
    boxes = [found.boxes for found in detector32.detect(images, with_vectors=False)]
    detector16 = FasterRCNNModel("random", cpu, SMALL_MIN_SIZE, SMALL_MAX_SIZE, 0.0, 5, precision="bf16")
    for fp32, bf16 in [
        (detector32, detector16),
        (ResNet50Embedder("random", cpu, "fp32"), ResNet50Embedder("random", cpu, "bf16")),
    ]:
        plain = np.vstack([fp32.embed([im], [b])[0] for im, b in zip(images, boxes)])
        fast = np.vstack([bf16.embed([im], [b])[0] for im, b in zip(images, boxes)])
        assert (plain * fast).sum(1).min() > 0.999
        centred = centred_cosines(plain, fast)
        assert centred.mean() >= 0.99 and centred.min() > 0.95, centred


def test_batched_embeddings_equal_one_by_one(detector, resnet):
    images = [load_image(GALLERY / f"scene_00{i}.jpg").rgb for i in range(3)]
    boxes = [np.array([[10, 20, 200, 240], [300, 50, 420, 300]], np.float32)] * 3
    for model in (detector, resnet):
        together = model.embed(images, boxes)
        alone = [model.embed([image], [b])[0] for image, b in zip(images, boxes)]
        for a, b in zip(together, alone):
            np.testing.assert_allclose(a, b, atol=2e-3)
            assert (a * b).sum(1).min() > 0.9999


def test_batched_detection_equals_one_by_one(detector):
    images = [load_image(GALLERY / f"scene_00{i}.jpg").rgb for i in range(2)]
    together = detector.detect(images, with_vectors=True)
    for image, found in zip(images, together):
        (alone,) = detector.detect([image], with_vectors=True)
        np.testing.assert_allclose(found.boxes, alone.boxes, atol=0.05)
        assert found.labels == alone.labels
        assert (found.vectors * alone.vectors).sum(1).min() > 0.999


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    with pytest.raises(SettingsError, match="--precision fp16 runs on CUDA GPUs only"):
        resolve_precision("fp16", cpu)


def test_queries_run_in_their_own_precision_whatever_the_index_was_built_with(tmp_path):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    names = copy_demo_images(gallery, 4)
    build_index(gallery, index, IndexSettings(**{**RANDOM_WHOLE.to_dict(), "precision": "fp32"}), progress=False)
    manifest = json.loads((index / (index / "HEAD").read_text().strip() / "manifest.json").read_text())
    assert manifest["settings"]["precision"] == "fp32"
    manifest["settings"]["precision"] = "fp16"  # as if built on a GPU: fp16 does not run on this CPU
    (index / (index / "HEAD").read_text().strip() / "manifest.json").write_text(json.dumps(manifest))
    for precision in ("auto", "bf16", "fp32"):
        searcher = Searcher(index, device="cpu", precision=precision)
        for name in names:
            (best,) = searcher.query(gallery / name, top_k=1)
            assert best.image == str(gallery / name) and best.score > 0.999
    with pytest.raises(SettingsError, match="--precision fp16 runs on CUDA GPUs only"):
        Searcher(index, device="cpu", precision="fp16")


def test_prefetching_keeps_order_and_raises_where_the_producer_failed():
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        yield 2
        raise ValueError("broken at 3")

    seen = []
    with pytest.raises(ValueError, match="broken at 3"):
        for item in prefetched(failing(), depth=2):
            seen.append(item)
    assert seen == [1, 2]
