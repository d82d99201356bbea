"""``--device cuda``: the GPU paths against the CPU's fp32 ones. They run where torch sees a CUDA GPU;
everywhere else (CI included) they skip."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torchvision.ops import box_iou

from retrieval.cli.main import main
from retrieval.images import load_image
from retrieval.models import FasterRCNNModel, ResNet50Embedder
from retrieval.models.detectors.faster_rcnn import GPU_IMAGES_PER_FORWARD
from retrieval.models.accel.speed import resolve_precision
from retrieval.index.snapshot import IndexSnapshot
from retrieval.testing.rows import all_rows

from tests.conftest import GALLERY, SMALL_MAX_SIZE, SMALL_MIN_SIZE, copy_demo_images, random_detect_args
from tests.test_speed import centred_cosines, photos

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU visible to torch: the --device cuda paths run on GPU machines"
)
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_precision_on_a_gpu_is_a_half_precision():
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert resolve_precision("auto", CUDA) == expected
    assert resolve_precision("fp16", CUDA) == torch.float16


@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_gpu_embeddings_agree_with_cpu_fp32_for_the_same_boxes(precision):
    images = photos()
    reference = FasterRCNNModel("random", CPU, SMALL_MIN_SIZE, SMALL_MAX_SIZE, 0.0, 5, precision="fp32")
    boxes = [found.boxes for found in reference.detect(images, with_vectors=False)]
    gpu_detector = FasterRCNNModel("random", CUDA, SMALL_MIN_SIZE, SMALL_MAX_SIZE, 0.0, 5, precision=precision)
    for cpu_model, gpu_model in [
        (reference, gpu_detector),
        (ResNet50Embedder("random", CPU, "fp32"), ResNet50Embedder("random", CUDA, precision)),
    ]:
        plain = np.vstack(cpu_model.embed(images, boxes))
        fast = np.vstack(gpu_model.embed(images, boxes))
        assert fast.dtype == np.float32 and fast.shape == plain.shape
        np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
        assert (plain * fast).sum(1).min() > 0.999
        centred = centred_cosines(plain, fast)
        assert centred.mean() >= 0.99 and centred.min() > 0.95, centred


@pytest.fixture
def exact_fp32():
    """fp32 without TF32 for the test's duration, so that only the batching differs."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def forward_images() -> list[np.ndarray]:
    """More demo scenes than one GPU forward takes; the second cut smaller, so that the batch is padded."""
    images = [load_image(GALLERY / f"scene_{i:03d}.jpg").rgb for i in range(GPU_IMAGES_PER_FORWARD + 2)]
    images[1] = images[1][:300, :500]
    return images


def test_gpu_embedding_of_many_images_per_forward_equals_one_image_at_a_time(exact_fp32):
    images = forward_images()
    boxes = [np.array([[10, 20, 200, 240], [300, 50, 420, 290], [0, 0, 499, 299]], np.float32)] * len(images)
    for model in (
        FasterRCNNModel("random", CUDA, SMALL_MIN_SIZE, SMALL_MAX_SIZE, precision="fp32"),
        ResNet50Embedder("random", CUDA, "fp32"),
    ):
        together = model.embed(images, boxes)
        for image, image_boxes, vectors in zip(images, boxes, together):
            (alone,) = model.embed([image], [image_boxes])
            assert (vectors * alone).sum(1).min() > 0.9999


def test_gpu_detection_of_many_images_per_forward_matches_one_image_at_a_time(exact_fp32):
    """Same-size images, one forward for many or one each: the same scores, and the same boxes and labels
    but where random weights leave candidates within a rounding error of one another (other kernels sum
    in another order; a padded image also gets other proposals, as in torchvision, so it is left out)."""
    images = [image for number, image in enumerate(forward_images()) if number != 1]
    detector = FasterRCNNModel("random", CUDA, SMALL_MIN_SIZE, SMALL_MAX_SIZE, 0.0, 5, precision="fp32")
    together = detector.detect(images, with_vectors=True)
    matched = 0
    for batched, single in zip(together, [detector.detect([image], with_vectors=True)[0] for image in images]):
        assert len(batched.boxes) == len(single.boxes) == 5
        np.testing.assert_allclose(batched.scores, single.scores, atol=1e-3)
        iou = box_iou(torch.from_numpy(batched.boxes), torch.from_numpy(single.boxes)).numpy()
        for row, label in enumerate(batched.labels):
            twin = int(iou[row].argmax())
            if iou[row, twin] > 0.95 and single.labels[twin] == label:
                matched += 1
                assert float(batched.vectors[row] @ single.vectors[twin]) > 0.99
    assert matched >= 0.8 * 5 * len(images)


@pytest.mark.parametrize("embedder", ["roi", "resnet50"])
def test_index_and_query_on_the_gpu_find_the_query_object_first(tmp_path, embedder):
    gallery, index = tmp_path / "gallery", tmp_path / "index"
    copy_demo_images(gallery, 12)
    size = ["--min-size", SMALL_MIN_SIZE, "--max-size", SMALL_MAX_SIZE]
    common = ["--embedder", embedder, *random_detect_args(4)]
    result = CliRunner().invoke(
        main, [str(a) for a in ["index", gallery, "--index", index, "--device", "cuda", *common, *size, "--quiet"]]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(CliRunner().invoke(main, ["info", "--index", str(index), "--json"]).output)
    assert info["images"] == 12 and info["objects"] == 48
    snapshot = IndexSnapshot.load(index)
    table = all_rows(snapshot)
    for row in (0, 21, 47):
        image, box = snapshot.gallery_root / table.image_paths[int(table.object_image[row])], table.boxes[row]
        query = ["query", image, "--box", ",".join(f"{v:.3f}" for v in box), "--index", index, "--device", "cuda"]
        result = CliRunner().invoke(main, [str(a) for a in [*query, "--group", "object", "--json", "--top-k", "3"]])
        assert result.exit_code == 0, result.output
        best = json.loads(result.output)["results"][0]
        assert best["image"] == str(image) and best["score"] >= 0.999
        np.testing.assert_allclose(best["box"], box, atol=0.01)
