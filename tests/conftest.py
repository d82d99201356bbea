"""Shared fixtures: the demo data, the grocery photos, and models with seeded random weights."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import tqdm

from retrieval.models import FasterRCNNModel, ResNet50Embedder
from retrieval.settings import IndexSettings

# No tqdm monitor thread: tests fork children (tests/children.py), and a fork while that thread holds tqdm's
# write lock leaves the child waiting for it forever.
tqdm.tqdm.monitor_interval = 0

if not os.environ.get("RETRIEVAL_CACHE_DIR"):  # the tests' seeded weights and hashes, not the user's cache
    os.environ["RETRIEVAL_CACHE_DIR"] = tempfile.mkdtemp(prefix="retrieval-test-cache-")
    atexit.register(shutil.rmtree, os.environ["RETRIEVAL_CACHE_DIR"], True)

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "gallery"
QUERY = ROOT / "query"
GROCERY = ROOT.parent / "shared" / "data" / "grocery"
SMALL_MIN_SIZE, SMALL_MAX_SIZE = 320, 533  # a small detector input keeps the tests fast on 2 cores

RANDOM_WHOLE = IndexSettings(embedder="resnet50", objects="whole", weights="random", device="cpu")
"""Each image one object, random ResNet50 vectors: the fastest honest index for store and pipeline tests."""


ANNOTATED_RESNET = IndexSettings(
    embedder="resnet50",
    objects="annotations",
    annotations=str(GALLERY / "annotations.json"),
    weights="random",
    device="cpu",
)
"""The demo gallery's annotation boxes, random ResNet50 vectors: P@1 is 1 on the demo queries."""


def random_detect(max_objects: int) -> IndexSettings:
    """roi on random Faster R-CNN detections: score threshold 0 keeps exactly ``max_objects`` per image."""
    return IndexSettings(
        embedder="roi",
        objects="detect",
        weights="random",
        score_threshold=0.0,
        max_objects=max_objects,
        min_size=SMALL_MIN_SIZE,
        max_size=SMALL_MAX_SIZE,
        device="cpu",
    )


def random_detect_args(max_objects: int) -> list[str]:
    """``retrieval index`` options for random detector and embedder weights keeping ``max_objects`` per image."""
    weights = ["--weights", "random", "--detector-weights", "random"]
    return [*weights, "--score-threshold", "0", "--max-objects", str(max_objects)]


@pytest.fixture(scope="session")
def detector() -> FasterRCNNModel:
    """Faster R-CNN with seeded random weights, every detection kept (score threshold 0), 5 per image."""
    return FasterRCNNModel(
        "random",
        torch.device("cpu"),
        min_size=SMALL_MIN_SIZE,
        max_size=SMALL_MAX_SIZE,
        score_threshold=0.0,
        max_objects=5,
    )


@pytest.fixture(scope="session")
def resnet() -> ResNet50Embedder:
    return ResNet50Embedder("random", torch.device("cpu"))


@pytest.fixture(scope="session")
def grocery() -> Path:
    if not (GROCERY / "val").is_dir():
        pytest.skip(f"real photos not found at {GROCERY} (they come with the development machines, not the repository)")
    return GROCERY


def copy_demo_images(folder: Path, count: int, start: int = 0) -> list[str]:
    """Copy ``count`` demo images (gallery scenes, then query images, then again under other names) into
    ``folder``; return their names. The first 56 are distinct images."""
    sources = sorted(GALLERY.glob("*.jpg")) + sorted(QUERY.glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for position in range(start, start + count):
        source = sources[position % len(sources)]
        repeat = f"-{position // len(sources)}" if position >= len(sources) else ""
        name = f"{source.parent.name}-{source.stem}{repeat}.jpg"
        (folder / name).write_bytes(source.read_bytes())
        names.append(name)
    return names


class CaseCounter:
    """How many cases a test module ran, kept on the pytest config so the terminal summary can say it."""

    def __init__(self) -> None:
        self.key = pytest.StashKey[int]()

    def count(self, config: pytest.Config) -> None:
        config.stash[self.key] = self.get(config) + 1

    def get(self, config: pytest.Config) -> int:
        return config.stash.get(self.key, 0)


FUZZ_CASES = CaseCounter()
"""Cases of tests/test_fuzz.py that ran."""


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if FUZZ_CASES.get(config):
        ran = FUZZ_CASES.get(config)
        terminalreporter.write_line(f"fuzz: {ran} bad-input cases ran (command options, HTTP requests)")
