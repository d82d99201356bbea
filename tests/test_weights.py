"""Weights: state_dict files in torchvision's format, the torch cache, offline failures, identities."""

import hashlib
import urllib.error

import numpy as np
import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from retrieval.errors import WeightsError
from retrieval.models import FasterRCNNModel, ResNet50Embedder
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


def test_wrong_architecture_is_named(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=f"detector weights file {path} does not fit the detector architecture"):
        FasterRCNNModel(str(path), torch.device("cpu"))


class NotWeights:
    pass


def test_pickled_objects_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": NotWeights()}, path)
    with pytest.raises(WeightsError, match="cannot be loaded as a state_dict with weights_only=True"):
        ResNet50Embedder(str(path), torch.device("cpu"))


def test_non_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="is not a state_dict"):
        ResNet50Embedder(str(path), torch.device("cpu"))


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
