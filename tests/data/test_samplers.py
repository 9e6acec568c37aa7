"""Negative samplers: proposals, resumable state, and no user's own positive ever used as a negative."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from booktower.config.training import NegativeConfig
from booktower.data.samplers import accidental_hits, build_sampler, gather_rows


def _sampler(kind: str, counts: np.ndarray, seed: int = 0):
    return build_sampler(NegativeConfig(sampler=kind, num_negatives=8), counts, torch.Generator().manual_seed(seed))


def test_popularity_sampler_follows_count_power_and_skips_unseen_items():
    counts = np.array([0, 1, 4, 9, 16])
    sampler = _sampler("popularity", counts)
    draws = sampler.sample(200_000).numpy()
    freq = np.bincount(draws, minlength=5) / len(draws)
    expected = counts ** 0.75 / (counts ** 0.75).sum()
    assert freq[0] == 0.0
    np.testing.assert_allclose(freq, expected, atol=0.01)
    np.testing.assert_allclose(sampler.proposal(torch.arange(5)).numpy(), expected)


def test_uniform_and_mixed_log_expected_counts():
    counts = np.array([1, 3, 0, 4])
    uniform, mixed = _sampler("uniform", counts), _sampler("mixed", counts)
    items = torch.tensor([0, 1, 2, 3])
    np.testing.assert_allclose(uniform.log_expected_count(items, 10, 8).exp().numpy(), [2.0] * 4, rtol=1e-6)
    # in-batch: 10 positives drawn by training popularity (1, 3, 0, 4)/8, plus 8 uniform draws (2 each)
    np.testing.assert_allclose(mixed.log_expected_count(items, 10, 8).exp().numpy(),
                               [2 + 10 / 8, 2 + 30 / 8, 2, 2 + 40 / 8], rtol=1e-6)


def test_sampler_state_round_trip_resumes_the_same_draws():
    sampler = _sampler("popularity", np.arange(1, 50))
    sampler.sample(5)
    state = sampler.state_dict()
    expected = sampler.sample(7, rows=3)
    fresh = _sampler("popularity", np.arange(1, 50), seed=99)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.sample(7, rows=3), expected)


def _positives(n_users: int, n_items: int, data) -> list[set[int]]:
    return [set(data.draw(st.lists(st.integers(0, n_items - 1), max_size=n_items, unique=True)))
            for _ in range(n_users)]


def _csr(positives: list[set[int]]):
    offsets = np.zeros(len(positives) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in positives], out=offsets[1:])
    values = np.array([i for p in positives for i in sorted(p)], dtype=np.int64)
    return torch.as_tensor(offsets), torch.as_tensor(values)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from(["uniform", "popularity", "in_batch", "mixed"]), st.booleans())
def test_a_users_own_positive_is_always_masked(data, kind, per_row):
    n_users, n_items = data.draw(st.integers(1, 6)), data.draw(st.integers(2, 12))
    positives = _positives(n_users, n_items, data)
    counts = np.ones(n_items, dtype=np.int64)
    sampler = _sampler(kind, counts, seed=data.draw(st.integers(0, 2**16)))
    rows = torch.as_tensor(data.draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=8)))
    negatives = sampler.sample(5, rows=len(rows) if per_row else None)
    if sampler.uses_in_batch and not per_row:
        in_batch = torch.as_tensor(data.draw(st.lists(st.integers(0, n_items - 1), min_size=len(rows),
                                                      max_size=len(rows))))
        negatives = torch.cat([in_batch, negatives])
    offsets, values = _csr(positives)
    pos_items, pos_rows = gather_rows(offsets, values, rows)
    hits = accidental_hits(negatives, pos_items, pos_rows, len(rows), n_items)
    cand = negatives.expand(len(rows), -1) if negatives.dim() == 1 else negatives
    for r, user in enumerate(rows.tolist()):
        for c, item in enumerate(cand[r].tolist()):
            assert bool(hits[r, c]) == (item in positives[user])
