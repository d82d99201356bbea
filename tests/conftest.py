"""Shared fixtures: the demo data, the grocery photos, and models with seeded random weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from retrieval.models import FasterRCNNModel, ResNet50Embedder

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "gallery"
QUERY = ROOT / "query"
GROCERY = ROOT.parent / "shared" / "data" / "grocery"
SMALL_MIN_SIZE, SMALL_MAX_SIZE = 320, 533  # a small detector input keeps the tests fast on 2 cores

sys.path.insert(0, str(ROOT / "scripts"))


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
