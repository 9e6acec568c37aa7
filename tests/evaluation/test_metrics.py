"""Metrics against hand-computed cases and a slow, obviously correct reference implementation."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from booktower.data.types import Ragged
from booktower.evaluation import metrics as m


def _naive(top: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Textbook definitions, one user at a time."""
    top = top[:k]
    hits = [item in relevant for item in top]
    dcg = sum(1.0 / math.log2(r + 2) for r, h in enumerate(hits) if h)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    first = next((r for r, h in enumerate(hits) if h), None)
    precisions = [sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h]
    return {
        "hr": float(any(hits)),
        "recall": sum(hits) / len(relevant) if relevant else 0.0,
        "precision": sum(hits) / k,
        "ndcg": dcg / idcg if idcg else 0.0,
        "mrr": 1.0 / (first + 1) if first is not None else 0.0,
        "map": sum(precisions) / min(len(relevant), k) if relevant else 0.0,
    }


def _vectorised(top: np.ndarray, truth: list[list[int]], k: int) -> dict[str, np.ndarray]:
    ragged = Ragged.from_lists(truth)
    users = np.arange(len(truth))
    hits = m.hit_matrix(top, ragged, users)
    n_rel = np.array([len(t) for t in truth])
    return {
        "hr": m.hit_rate(hits, k), "recall": m.recall(hits, n_rel, k), "precision": m.precision(hits, k),
        "ndcg": m.ndcg(hits, n_rel, k), "mrr": m.mrr(hits, k), "map": m.average_precision(hits, n_rel, k),
    }


def test_hand_computed_single_item():
    top = np.array([[5, 3, 9], [1, 2, 4], [7, 8, 0]])
    truth = [[3], [6], [7]]  # rank 1 (0-based), absent, rank 0
    got = _vectorised(top, truth, 3)
    assert np.allclose(got["hr"], [1, 0, 1])
    assert np.allclose(got["recall"], [1, 0, 1])
    assert np.allclose(got["ndcg"], [1 / math.log2(3), 0, 1])
    assert np.allclose(got["mrr"], [0.5, 0, 1])
    assert np.allclose(got["map"], [0.5, 0, 1])
    assert np.allclose(got["precision"], [1 / 3, 0, 1 / 3])
    # a cut-off above the hit excludes it
    assert np.allclose(_vectorised(top, truth, 1)["hr"], [0, 0, 1])


def test_hand_computed_two_items():
    top = np.array([[4, 1, 2, 3]])
    got = _vectorised(top, [[1, 3]], 4)  # hits at ranks 1 and 3
    assert np.isclose(got["recall"][0], 1.0)
    assert np.isclose(got["precision"][0], 0.5)
    assert np.isclose(got["mrr"][0], 0.5)
    assert np.isclose(got["map"][0], (1 / 2 + 2 / 4) / 2)
    idcg = 1 + 1 / math.log2(3)
    assert np.isclose(got["ndcg"][0], (1 / math.log2(3) + 1 / math.log2(5)) / idcg)


def test_coverage_and_popularity():
    top = np.array([[0, 1], [0, 2]])
    assert m.coverage(top, 1, 4) == 0.25
    assert m.coverage(top, 2, 4) == 0.75
    pct = m.popularity_percentiles(np.array([10, 0, 5, 5]))
    assert np.allclose(pct, [100, 25, 75, 75])
    assert np.allclose(m.popularity_bias(top, 2, pct), [62.5, 87.5])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_matches_naive_reference(data):
    n_items = data.draw(st.integers(3, 30))
    n_users = data.draw(st.integers(1, 8))
    width = data.draw(st.integers(1, n_items))
    k = data.draw(st.integers(1, width + 3))
    top, truth = [], []
    for _ in range(n_users):
        top.append(data.draw(st.permutations(list(range(n_items))))[:width])
        truth.append(sorted(data.draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=4))))
    got = _vectorised(np.array(top), truth, k)
    for u in range(n_users):
        expected = _naive(top[u], set(truth[u]), k)
        for name, value in expected.items():
            assert math.isclose(got[name][u], value, abs_tol=1e-12), (name, u)
