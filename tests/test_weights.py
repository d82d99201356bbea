"""Weights: state_dict files in torchvision's format, the torch cache, offline failures, identities."""

import hashlib
import re
import urllib.error

import numpy as np
import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from retrieval.errors import WeightsError
from retrieval.models import FasterRCNNModel, ResNet50Embedder
from retrieval.models.detectors.architectures import build_architecture
from retrieval.models.detectors.checkpoint import save_checkpoint
from retrieval.models.detectors.faster_rcnn import build_faster_rcnn
from retrieval.models.weights import seeded_init

BOX = np.array([[40, 30, 300, 200]], dtype=np.float32)
IMAGE = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_state_dict_file_loads_and_is_identified_by_sha256(tmp_path, resnet):
    path = tmp_path / "mine.pth"
    with seeded_init(seed=7):
        torch.save(resnet50(weights=None).state_dict(), path)
    loaded = ResNet50Embedder(str(path), torch.device("cpu"))
    assert loaded.identity == {"source": "file", "path": str(path), "sha256": sha256(path)}
    ours, random_weights = loaded.embed([IMAGE], [BOX])[0], resnet.embed([IMAGE], [BOX])[0]
    assert not np.allclose(ours, random_weights)  # the file's weights, not the seed-0 ones


def test_detector_file_written_by_torchvision_model_loads(tmp_path, detector):
    """A state_dict saved from torchvision's own builder (BatchNorm2d, num_batches_tracked keys) loads strictly."""
    path = tmp_path / "frcnn.pth"
    with seeded_init(seed=3):
        torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), path)
    loaded = FasterRCNNModel(str(path), torch.device("cpu"), min_size=320, max_size=533)
    assert loaded.identity["sha256"] == sha256(path)
    assert loaded.embed([IMAGE], [BOX])[0].shape == (1, 1024)


def test_random_weights_round_trip_through_a_file_give_equal_vectors(tmp_path, detector):
    path = tmp_path / "same.pth"
    with seeded_init():  # exactly what --weights random builds
        torch.save(build_faster_rcnn().state_dict(), path)
    loaded = FasterRCNNModel(str(path), torch.device("cpu"), min_size=320, max_size=533)
    np.testing.assert_array_equal(loaded.embed([IMAGE], [BOX])[0], detector.embed([IMAGE], [BOX])[0])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match=f"embedder weights file {tmp_path / 'nope.pth'} not found"):
        ResNet50Embedder(str(tmp_path / "nope.pth"), torch.device("cpu"))


STATE_DICT = "expected a state_dict saved with torch.save(model.state_dict())"
CHECKPOINT = "expected a checkpoint written by 'retrieval train-detector'"


class NotWeights:
    pass


def write_bad_file(path, kind):
    """A file that is no state_dict: random bytes, text, empty, a pickled object, a pickle of a list."""
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled object":
        torch.save({"model": NotWeights()}, path)
    elif kind == "list":
        torch.save([torch.zeros(1)], path)


BAD_FILES = {
    "random bytes": "is not a PyTorch state_dict (it is corrupt, or in another format)",
    "text": "is not a PyTorch state_dict (it is corrupt, or in another format)",
    "empty": "is empty (0 bytes)",
    "pickled object": "holds a pickled Python object (tests.test_weights.NotWeights), not only tensors",
}


def one_line_error(build) -> str:
    with pytest.raises(WeightsError) as error:
        build()
    message = str(error.value)
    assert "\n" not in message and "weights_only=False" not in message and "Re-running" not in message
    return message


@pytest.mark.parametrize("kind", [*BAD_FILES, "list"])
def test_a_bad_weights_file_is_named_with_what_is_expected(tmp_path, kind):
    path = tmp_path / "mine.pth"
    write_bad_file(path, kind)
    message = one_line_error(lambda: ResNet50Embedder(str(path), torch.device("cpu")))
    assert message.startswith(f"embedder weights file {path} ") and message.endswith(STATE_DICT)
    assert BAD_FILES.get(kind, "holds a list, not a state_dict") in message


@pytest.mark.parametrize("kind", [*BAD_FILES, "list"])
def test_a_bad_detector_checkpoint_is_named_with_what_is_expected(tmp_path, kind):
    path = tmp_path / "mine.pt"
    write_bad_file(path, kind)
    message = one_line_error(lambda: FasterRCNNModel("default", torch.device("cpu"), detector=str(path)))
    assert str(path) in message and CHECKPOINT in message
    assert BAD_FILES.get(kind, "holds a list that is not a checkpoint (format retrieval-detector/1)") in message


def test_wrong_keys_are_counted_and_the_first_few_named_whole(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    message = one_line_error(lambda: FasterRCNNModel(str(path), torch.device("cpu")))
    assert message.startswith(f"detector weights file {path} does not fit the detector architecture: ")
    detector_keys = set(build_faster_rcnn().state_dict())
    missing = re.search(r"(\d+) keys missing \(([^)]*), and (\d+) more\)", message)
    assert missing, message
    named = missing.group(2).split(", ")
    assert len(named) == 3 and set(named) <= detector_keys  # whole key names
    assert int(missing.group(1)) == 3 + int(missing.group(3)) == len(detector_keys - set(resnet50().state_dict()))
    unexpected = re.search(r"(\d+) unexpected keys \(([^)]*), and \d+ more\)", message)
    assert unexpected and set(unexpected.group(2).split(", ")) <= set(resnet50().state_dict()), message


def test_a_checkpoint_whose_model_has_other_shapes_says_which(tmp_path):
    with seeded_init():
        model = build_architecture("mobilenet_v3_large_320_fpn", 4, 160, 240)
    save_checkpoint(tmp_path / "mine.pt", model, "mobilenet_v3_large_320_fpn", ["a", "b"])  # 2 classes, 4 outputs
    path = tmp_path / "mine.pt"
    message = one_line_error(lambda: FasterRCNNModel("default", torch.device("cpu"), detector=str(path)))
    assert f"detector checkpoint {path} does not fit its own architecture: 4 keys of another shape (" in message
    assert "roi_heads.box_predictor.cls_score.weight (4, 1024) where the model has (3, 1024)" in message


def test_default_weights_offline_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError) as error:
        ResNet50Embedder("default", torch.device("cpu"))
    message = str(error.value)
    assert "could not download resnet50-11ad3fa6.pth (Temporary failure in name resolution)" in message
    assert f"in {tmp_path / 'hub' / 'checkpoints'}/" in message
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message


def test_default_weights_are_read_from_the_torch_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    cached = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    cached.parent.mkdir(parents=True)
    with seeded_init(seed=5):
        torch.save(resnet50(weights=None).state_dict(), cached)
    loaded = ResNet50Embedder("default", torch.device("cpu"))
    assert loaded.identity == {
        "source": "default",
        "name": "ResNet50_Weights.IMAGENET1K_V2",
        "file": cached.name,
        "sha256": sha256(cached),
    }
