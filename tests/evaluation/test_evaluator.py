"""evaluate_split against a brute-force reference on tiny data built through the real pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from booktower.data.toy import checkerboard, random_prepared
from booktower.evaluation import evaluate_split


def _random_score_fn(n_users: int, n_items: int, seed: int = 0):
    table = torch.from_numpy(np.random.default_rng(seed).standard_normal((n_users, n_items)).astype(np.float32))
    return table, (lambda users: table[torch.from_numpy(users)].clone())


def _parts(data, part):
    s = data.split
    return (s.valid, [s.train]) if part == "validation" else (s.test, [s.train, s.valid])


@pytest.mark.parametrize("part", ["validation", "test"])
def test_matches_brute_force(part):
    data = random_prepared(n_users=60, n_items=40, per_user=8, seed=3)
    table, score_fn = _random_score_fn(data.n_users, data.n_items)
    result = evaluate_split(score_fn, data, part, [5, 10], chunk=7, full_rank=True)
    in_lists = evaluate_split(score_fn, data, part, [5, 10], chunk=7)
    full = result.per_user["rank"].to_numpy()
    assert in_lists.per_user["rank"].to_list() == [int(r) if r <= 10 else None for r in full]
    truth_part, known_parts = _parts(data, part)
    truth = dict(zip(truth_part.user.tolist(), truth_part.item.tolist()))
    assert result.metrics["HR@10"] == pytest.approx(result.per_user["HR@10"].mean())
    hr, ndcg_sum = 0.0, 0.0
    for row in result.per_user.iter_rows(named=True):
        user = row["user"]
        scores = table[user].numpy().astype(np.float64)
        known = {int(i) for p in known_parts for i in p.item[p.user == user]}
        scores[list(known)] = -np.inf
        order = np.argsort(-scores, kind="stable")
        position = int(np.flatnonzero(order == truth[user])[0])
        assert row["rank"] == position + 1
        assert not known & set(result.top_k.items[result.per_user["user"].to_list().index(user)].tolist())
        hr += position < 10
        ndcg_sum += 1 / math.log2(position + 2) if position < 10 else 0.0
    n = result.per_user.height
    assert n == len(set(truth))
    assert result.metrics["HR@10"] == pytest.approx(hr / n)
    assert result.metrics["NDCG@10"] == pytest.approx(ndcg_sum / n)


def test_chunking_and_user_subset_do_not_change_numbers():
    data = random_prepared(n_users=50, n_items=30, per_user=6, seed=1)
    _, score_fn = _random_score_fn(data.n_users, data.n_items, seed=5)
    whole = evaluate_split(score_fn, data, "test", [10], chunk=4096)
    chunked = evaluate_split(score_fn, data, "test", [10], chunk=3)
    assert whole.metrics == chunked.metrics
    subset = evaluate_split(score_fn, data, "test", [10], users=np.array([4, 2, 9]))
    assert subset.per_user["user"].to_list() == [2, 4, 9]
    expected = whole.per_user.filter(whole.per_user["user"].is_in([2, 4, 9]))["NDCG@10"].to_list()
    assert subset.per_user["NDCG@10"].to_list() == expected


def test_checkerboard_perfect_model_scores_one():
    data = checkerboard(20)
    item_num = np.array([int(s[1:]) for s in data.items.decode(np.arange(data.n_items))])
    user_num = np.array([int(s[1:]) for s in data.users.decode(np.arange(data.n_users))])

    def score_fn(users):  # same parity first, the reader's own number on top: the known answer
        same = (item_num[None, :] - user_num[users, None]) % 2 == 0
        own = item_num[None, :] == user_num[users, None]
        return torch.from_numpy(same.astype(np.float32) + own.astype(np.float32))

    result = evaluate_split(score_fn, data, "test", [1, 10])
    assert result.metrics["HR@1"] == 1.0 and result.metrics["NDCG@10"] == 1.0
    assert (result.per_user["rank"] == 1).all()
    assert result.per_user["item_id"].to_list() == result.per_user["user_id"].str.replace("u", "b").to_list()


def test_wrong_shape_is_named():
    data = random_prepared(n_users=20, n_items=15, per_user=5)
    with pytest.raises(ValueError, match="expected"):
        evaluate_split(lambda users: torch.zeros(len(users), 3), data, "test", [10])
    with pytest.raises(ValueError, match="part must be"):
        evaluate_split(lambda users: torch.zeros(len(users), 15), data, "train", [10])
