"""Baselines: the checkerboard contract (the held-out diagonal comes back first), protocol and determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from booktower.config import BaselineConfig
from booktower.data.toy import checkerboard
from booktower.evaluation import evaluate_split
from booktower.evaluation.baselines import (
    EASE,
    ItemKNN,
    MostPopular,
    interaction_matrix,
    make_baseline,
    run_baselines,
)
from booktower.evaluation.baselines.ease import ease_weights

FAST = BaselineConfig(als_factors=16, als_iterations=10, bpr_factors=16, bpr_iterations=100, bpr_learning_rate=0.05)


@pytest.fixture(scope="module")
def board():
    return checkerboard(30)


def _fit_test(name, data, config=FAST, seed=0):
    split = data.split
    model = make_baseline(name, config, seed).fit(interaction_matrix(data.n_users, data.n_items, split.train, split.valid))
    return model, evaluate_split(model.score, data, "test", [1, 5])


@pytest.mark.parametrize("name", ["itemknn", "ease", "als"])
def test_checkerboard_diagonal_is_top_one(board, name):
    _, result = _fit_test(name, board)
    assert result.metrics["HR@1"] == 1.0


def test_bpr_learns_the_parity(board):
    _, result = _fit_test("bpr", board)
    assert result.metrics["HR@5"] > 0.5  # random would give about 5 / 28


def test_most_popular_scores_counts():
    matrix = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]], dtype=np.float32))
    scores = MostPopular().fit(matrix).score(np.array([0, 1]))
    assert scores.tolist() == [[2, 0, 3], [2, 0, 3]]


def test_itemknn_is_cosine_with_zero_diagonal():
    x = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float32)
    model = ItemKNN().fit(sp.csr_matrix(x))
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(sim, 0)
    assert np.allclose(model.similarity.toarray(), sim, atol=1e-6)
    assert np.allclose(model.score(np.array([0])).numpy(), x[[0]] @ sim, atol=1e-6)


def test_ease_matches_the_closed_form_and_limits_items():
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    gram = x.T @ x
    p = np.linalg.inv(gram + 5.0 * np.eye(12))
    expected = np.eye(12) - p / np.diag(p)[None, :]
    assert np.allclose(ease_weights(gram.copy(), 5.0), expected, atol=1e-5)
    model = EASE(lam=5.0, max_items=4).fit(sp.csr_matrix(x))
    top4 = np.argsort(-x.sum(axis=0), kind="stable")[:4]
    scores = model.score(np.arange(40)).numpy()
    others = np.setdiff1d(np.arange(12), top4)
    assert np.all(scores[:, others] == 0)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_seeded_factorisations_reproduce(board, name):
    a, _ = _fit_test(name, board, seed=3)
    b, _ = _fit_test(name, board, seed=3)
    users = np.arange(board.n_users)
    assert np.array_equal(a.score(users).numpy(), b.score(users).numpy())


def test_unknown_baseline_is_named():
    with pytest.raises(ValueError, match="choose from"):
        make_baseline("knn", FAST, 0)


def test_run_baselines_writes_protocol_table(board, tmp_path):
    table = run_baselines(["pop", "itemknn"], FAST, board, [1, 5], 0, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(table))
    assert set(saved["itemknn"]) == {"validation", "test"}
    assert saved["itemknn"]["test"]["HR@1"] == 1.0
    assert (tmp_path / "itemknn" / "per_user_test.parquet").exists()


def test_itemknn_neighbour_cap_scores_each_item_by_its_strongest_neighbours():
    rng = np.random.default_rng(3)
    x = (rng.random((12, 9)) * (rng.random((12, 9)) < 0.5)).astype(np.float32)  # weighted: no tied similarities
    model = ItemKNN(neighbors=3).fit(sp.csr_matrix(x))
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(sim, 0)
    capped = np.zeros_like(sim)
    for j in range(len(sim)):  # item j's three most similar items, by a plain sort
        keep = np.argsort(-sim[j])[:3]
        capped[j, keep] = sim[j, keep]
    users = np.arange(len(x))
    assert np.allclose(model.score(users).numpy(), x @ capped.T, atol=1e-6)
    assert not np.allclose(x @ capped.T, x @ sim, atol=1e-3)  # the cap changed the scores: it was exercised
