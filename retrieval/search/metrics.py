"""Retrieval metrics over one ranking, as plain functions of a relevance list.

A ranking is a sequence of booleans, best first: ``relevant[i]`` says whether
the item at rank ``i + 1`` is a positive. Junk items are removed before these
functions see the ranking. ``n_relevant`` counts every positive, retrieved or
not, so a positive missing from the ranking lowers recall and AP.

- P@k      = (positives among the first k) / k  (k, even when fewer than k items are ranked)
- recall@k = (positives among the first k) / n_relevant
- AP       = (1 / n_relevant) * sum over ranks r holding a positive of P@r
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Fraction of the first ``k`` ranks that hold a positive."""
    return float(np.sum(np.asarray(relevant[:k], dtype=bool))) / k


def recall_at_k(relevant: Sequence[bool], n_relevant: int, k: int) -> float:
    """Fraction of all ``n_relevant`` positives found in the first ``k`` ranks (0 when there are none)."""
    if n_relevant == 0:
        return 0.0
    return float(np.sum(np.asarray(relevant[:k], dtype=bool))) / n_relevant


def average_precision(relevant: Sequence[bool], n_relevant: int) -> float:
    """Mean of P@r over the ranks r of the positives, over all ``n_relevant`` positives (0 when there are none)."""
    if n_relevant == 0:
        return 0.0
    hits = np.asarray(relevant, dtype=bool)
    ranks = np.flatnonzero(hits) + 1
    precisions = np.arange(1, len(ranks) + 1) / ranks
    return float(precisions.sum()) / n_relevant


def chance_average_precision(n_relevant: int, n_total: int) -> float:
    """Expected AP of a uniformly random ranking of ``n_total`` items holding ``n_relevant`` positives.

    E[AP] = (1/N) * (H_N + (R - 1)/(N - 1) * (N - H_N)), with H_N the N-th harmonic number.
    """
    if n_relevant == 0 or n_total == 0:
        return 0.0
    if n_total == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, n_total + 1)))
    return (harmonic + (n_relevant - 1) / (n_total - 1) * (n_total - harmonic)) / n_total
