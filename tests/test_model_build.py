"""Fast model building (models/model_build.py) against the plain builds it replaces: a model built on the meta
device takes a weights file's tensors exactly; the seeded-weights cache gives the same tensors and fingerprint
as a fresh seeded init; a bad cache file is made again; the weights files' remembered sha256 follows the file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from torchvision.models import ResNet50_Weights, resnet50

from retrieval.errors import WeightsError
from retrieval.models.model_build import build_with_weights, seeded_cache_path, seeded_model
from retrieval.models.weights import apply_weights, file_sha256, read_weights, seeded_init, state_fingerprint


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of this test's own."""
    monkeypatch.setenv("RETRIEVAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def plain_seeded(seed: int = 0) -> torch.nn.Module:
    with seeded_init(seed):
        return resnet50(weights=None)


def same_tensors(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    one, other = first.state_dict(), second.state_dict()
    return one.keys() == other.keys() and all(torch.equal(one[key], other[key]) for key in one)


def test_a_weights_file_loads_into_a_meta_built_model_exactly(tmp_path, cache):
    saved = plain_seeded(seed=3)
    torch.save(saved.state_dict(), tmp_path / "weights.pth")
    read = read_weights(str(tmp_path / "weights.pth"), ResNet50_Weights.DEFAULT, "embedder")
    model, identity = build_with_weights(lambda: resnet50(weights=None), read, "resnet50")
    assert same_tensors(model, saved)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    plain = plain_seeded()
    assert identity == apply_weights(plain, read)  # the identity the plain path gives
    assert identity["sha256"] == hashlib.sha256((tmp_path / "weights.pth").read_bytes()).hexdigest()


def test_a_half_precision_file_gives_float32_tensors_as_the_plain_load_does(tmp_path, cache):
    saved = plain_seeded(seed=3).half()
    torch.save(saved.state_dict(), tmp_path / "half.pth")
    read = read_weights(str(tmp_path / "half.pth"), ResNet50_Weights.DEFAULT, "embedder")
    model, _ = build_with_weights(lambda: resnet50(weights=None), read, "resnet50")
    plain = plain_seeded()
    apply_weights(plain, read)
    assert {t.dtype for t in model.parameters()} == {torch.float32}
    assert same_tensors(model, plain)


def test_a_file_that_does_not_fit_is_refused_as_before(tmp_path, cache):
    state = plain_seeded().state_dict()
    del state["fc.weight"]
    torch.save(state, tmp_path / "short.pth")
    read = read_weights(str(tmp_path / "short.pth"), ResNet50_Weights.DEFAULT, "embedder")
    misfit = r"short.pth does not fit the embedder architecture: 1 key missing \(fc.weight\)$"
    with pytest.raises(WeightsError, match=misfit):
        build_with_weights(lambda: resnet50(weights=None), read, "resnet50")


def test_cached_seeded_weights_equal_a_fresh_seeded_init(cache):
    fresh = plain_seeded()
    first, first_print = seeded_model(lambda: resnet50(weights=None), "resnet50")
    assert seeded_cache_path("resnet50").is_file()
    again, again_print = seeded_model(lambda: resnet50(weights=None), "resnet50")
    assert same_tensors(first, fresh) and same_tensors(again, fresh)
    assert first_print == again_print == state_fingerprint(fresh)
    assert not any(t.is_meta for t in (*again.parameters(), *again.buffers()))


def test_the_cache_file_is_named_by_the_versions_that_make_the_init(cache, monkeypatch):
    before = seeded_cache_path("resnet50")
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert seeded_cache_path("resnet50") != before
    assert seeded_cache_path("resnet50").parent == before.parent == cache / "seeded-weights"


def test_a_torn_cache_file_is_made_again(cache):
    path = seeded_cache_path("resnet50")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a whole file")
    model, fingerprint = seeded_model(lambda: resnet50(weights=None), "resnet50")
    assert fingerprint == state_fingerprint(plain_seeded()) and same_tensors(model, plain_seeded())
    assert path.stat().st_size > 90_000_000  # replaced by the real tensors


def test_an_unwritable_cache_folder_is_passed_over(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RETRIEVAL_CACHE_DIR", str(blocker / "cache"))
    model, fingerprint = seeded_model(lambda: resnet50(weights=None), "resnet50")
    assert fingerprint == state_fingerprint(model) == state_fingerprint(plain_seeded())


def test_the_detector_and_embedder_identities_match_the_plain_builds(cache):
    from retrieval.models.detectors.architectures import COCO_CLASSES, build_architecture
    from retrieval.models.detectors.faster_rcnn import FasterRCNNModel

    with seeded_init():
        plain = build_architecture("resnet50_fpn", COCO_CLASSES, 320, 533)
    for _ in range(2):  # made, then from the cache
        model = FasterRCNNModel("random", torch.device("cpu"), min_size=320, max_size=533)
        assert model.identity == {"source": "random", "seed": 0, "state_sha256": state_fingerprint(plain)}


def test_a_remembered_sha256_follows_the_file(tmp_path, cache):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"first contents")
    assert file_sha256(path) == hashlib.sha256(b"first contents").hexdigest()
    remembered = list((cache / "file-sha256").iterdir())
    assert [entry.read_text() for entry in remembered] == [hashlib.sha256(b"first contents").hexdigest()]
    assert file_sha256(path) == hashlib.sha256(b"first contents").hexdigest()  # from the cache
    path.write_bytes(b"other contents")
    assert file_sha256(path) == hashlib.sha256(b"other contents").hexdigest()


def test_a_damaged_remembered_sha256_is_computed_again(tmp_path, cache):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"contents")
    file_sha256(path)
    (entry,) = (cache / "file-sha256").iterdir()
    entry.write_text("not a digest")
    assert file_sha256(path) == hashlib.sha256(b"contents").hexdigest()
    assert entry.read_text() == hashlib.sha256(b"contents").hexdigest()


def test_building_a_detector_does_not_import_torchdynamo(tmp_path):
    """Initialising meta tensors would run torch's reference ops, whose first use imports TorchDynamo."""
    probe = (
        "import sys, torch\n"
        "from retrieval.models.detectors.faster_rcnn import FasterRCNNModel\n"
        "FasterRCNNModel('random', torch.device('cpu'), min_size=320, max_size=533)\n"
        "FasterRCNNModel('random', torch.device('cpu'), min_size=320, max_size=533)\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
    )
    env = {**os.environ, "RETRIEVAL_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert len(list((tmp_path / "cache" / "seeded-weights").iterdir())) == 1
