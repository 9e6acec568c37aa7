"""ID tables started from the training interactions' SVD (model.*.id_init: svd): the factors reproduce who read
what, the same seed gives the same start, and the model's tables hold them at the configured scale."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from booktower.data.toy import random_prepared
from booktower.evaluation.baselines.base import interaction_matrix
from booktower.models.init import start_from, svd_factors
from booktower.training.pipeline import build_model


def test_factors_of_a_low_rank_log_reproduce_its_co_reads():
    # readers 0-2 read books 0-1, readers 3-4 read books 2-3: rank 2, so 3 factors hold it all
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=float))
    users, items = svd_factors(x, 3, np.random.default_rng(0))
    dense = x.toarray()
    np.testing.assert_allclose(users @ items.T, dense, atol=1e-8)  # who read what
    values, vectors = np.linalg.eigh(dense.T @ dense)  # co-reads; the books' Gram matrix is their square root
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    np.testing.assert_allclose(items @ items.T, root, atol=1e-8)
    wide_users, wide_items = svd_factors(x, 8, np.random.default_rng(0))  # wider than the matrix allows
    assert wide_items.shape == (4, 8) and not wide_items[:, 3:].any() and not wide_users[:, 3:].any()


def test_the_same_rng_gives_the_same_factors_and_an_empty_log_gives_zeros():
    x = sp.random(40, 30, density=0.2, random_state=1, format="csr")
    first, second = (svd_factors(x, 5, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(first[1], second[1])
    assert not svd_factors(sp.csr_matrix((5, 4)), 3, np.random.default_rng(0))[1].any()


def test_an_svd_start_fills_the_item_table_at_the_configured_scale(small_config):
    data = random_prepared(n_users=60, n_items=30, per_user=8)
    config = small_config("model.item.id_init=svd", "model.item.id_init_std=0.3")
    model = build_model(config, data, torch.device("cpu"))
    table = model.item_tower.ids.table.weight.detach().numpy().astype(np.float64)
    assert table.std() == pytest.approx(0.3, rel=1e-4)
    x = interaction_matrix(data.n_users, data.n_items, data.split.train).toarray()
    _, items = svd_factors(sp.csr_matrix(x), table.shape[1], np.random.default_rng(config.seed))
    np.testing.assert_allclose(table, items * (0.3 / items.std()), rtol=1e-5, atol=1e-7)
    again = build_model(config, data, torch.device("cpu")).item_tower.ids.table.weight
    assert torch.equal(again, model.item_tower.ids.table.weight), "seeded: the same start"
    normal = build_model(small_config(), data, torch.device("cpu")).item_tower.ids.table.weight
    assert normal.std().item() == pytest.approx(0.05, rel=0.2), "the default start is unchanged"


def test_factors_must_fit_the_table():
    with pytest.raises(ValueError, match="shape"):
        start_from(torch.zeros(3, 2), np.zeros((3, 4)), 0.1)
