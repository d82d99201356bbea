"""Retrieval quality with real weights on real photos: the pretrained efficientnet_lite0 against random weights.

The grocery val photos (296 phone photos, 60 classes; skipped where ../shared/data/grocery is absent), both
protocols of ``scripts/benchmark_quality.py``. Measured on this machine (bf16): efficientnet_lite0 GAP,
iconic mAP 0.379 and photos mAP 0.712; random weights 0.039 and 0.295; α-QE (k=3) iconic mAP 0.415. The
bounds below leave room for fp32 machines and library versions, and still fail if the weights or the
pooling were wrong.
"""

from __future__ import annotations

import pytest

from retrieval import IndexSettings, Searcher, build_index
from retrieval.search.rerank import Rerank
from retrieval.testing.grocery import iconic_protocol, iconic_ranker, load_grocery, photo_protocol, photo_ranker


@pytest.fixture(scope="module")
def data(grocery):
    return load_grocery(grocery)


def searcher_for(data, tmp_path_factory, weights: str) -> Searcher:
    index = tmp_path_factory.mktemp(f"lite0-{weights}") / "index"
    settings = IndexSettings(embedder="efficientnet_lite0", weights=weights, objects="whole", device="cpu")
    build_index(data.gallery, index, settings, progress=False)
    return Searcher(index, device="cpu")


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory) -> Searcher:
    return searcher_for(data, tmp_path_factory, "default")


@pytest.fixture(scope="module")
def untrained(data, tmp_path_factory) -> Searcher:
    return searcher_for(data, tmp_path_factory, "random")


def test_pretrained_efficientnet_lite0_retrieves_far_above_random_weights(data, pretrained, untrained):
    trained_iconic = iconic_protocol(data, iconic_ranker(pretrained, data, Rerank(), None))
    random_iconic = iconic_protocol(data, iconic_ranker(untrained, data, Rerank(), None))
    assert trained_iconic["queries"] == random_iconic["queries"] == 60
    assert trained_iconic["mAP"] > 0.32 and random_iconic["mAP"] < 0.10
    assert trained_iconic["P@1"] > 0.28 and trained_iconic["R@10"] > 0.40
    trained_photos = photo_protocol(data, photo_ranker(pretrained, Rerank()))
    random_photos = photo_protocol(data, photo_ranker(untrained, Rerank()))
    assert trained_photos["queries"] == 296
    assert trained_photos["mAP"] > 0.65 and random_photos["mAP"] < 0.36
    assert trained_photos["P@1"] > 0.85 and trained_photos["R@10"] > 0.74


def test_alpha_query_expansion_does_not_lower_map_on_the_iconic_protocol(data, pretrained):
    plain = iconic_protocol(data, iconic_ranker(pretrained, data, Rerank(), None))
    expanded = iconic_protocol(data, iconic_ranker(pretrained, data, Rerank("aqe", 3), None))
    assert expanded["mAP"] >= plain["mAP"]
