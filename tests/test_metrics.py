import numpy as np
import pytest

from retrieval.search.metrics import average_precision, chance_average_precision, precision_at_k, recall_at_k

# A ranking of 10 items with positives at ranks 1, 3 and 6, and one positive never retrieved (4 in all).
RANKING = [True, False, True, False, False, True, False, False, False, False]


def test_precision_at_k_by_hand():
    assert precision_at_k(RANKING, 1) == 1.0
    assert precision_at_k(RANKING, 5) == pytest.approx(2 / 5)
    assert precision_at_k(RANKING, 10) == pytest.approx(3 / 10)
    # fewer items than k still divide by k
    assert precision_at_k([True, True], 10) == pytest.approx(0.2)


def test_recall_at_k_by_hand():
    assert recall_at_k(RANKING, 4, 1) == pytest.approx(1 / 4)
    assert recall_at_k(RANKING, 4, 10) == pytest.approx(3 / 4)
    assert recall_at_k(RANKING, 0, 10) == 0.0


def test_average_precision_by_hand():
    # (P@1 + P@3 + P@6) / 4 = (1 + 2/3 + 3/6) / 4
    assert average_precision(RANKING, 4) == pytest.approx((1 + 2 / 3 + 0.5) / 4)
    assert average_precision([True, True, False], 2) == 1.0
    assert average_precision([False, False, True], 1) == pytest.approx(1 / 3)
    assert average_precision([False] * 5, 3) == 0.0


def test_chance_average_precision_matches_simulation():
    rng = np.random.default_rng(0)
    for n_relevant, n_total in [(1, 10), (7, 40), (3, 5), (10, 10)]:
        base = np.array([True] * n_relevant + [False] * (n_total - n_relevant))
        simulated = np.mean([average_precision(rng.permutation(base), n_relevant) for _ in range(20000)])
        assert chance_average_precision(n_relevant, n_total) == pytest.approx(simulated, abs=0.01)
    assert chance_average_precision(10, 10) == pytest.approx(1.0)
