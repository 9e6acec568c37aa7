"""Vocabulary round trip and unknown-id policy; k-core properties (hypothesis)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booktower.data.pruning import k_core
from booktower.data.vocab import UnknownIdError, Vocabulary

ids = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=50, unique=True)


@given(ids)
@settings(max_examples=60, deadline=None)
def test_vocabulary_round_trip(raw):
    vocab = Vocabulary(raw, name="item_id")
    indices = vocab.encode(raw)
    assert indices.tolist() == list(range(len(raw)))
    assert vocab.decode(indices) == raw
    assert all(vocab.index(r) == i for i, r in enumerate(raw))


@given(ids, st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=10))
@settings(max_examples=60, deadline=None)
def test_unknown_ids_follow_the_policy(raw, queries):
    vocab = Vocabulary(raw)
    known = set(raw)
    coded = vocab.encode(queries, unknown="null")
    assert [c == -1 for c in coded] == [q not in known for q in queries]
    if any(q not in known for q in queries):
        with pytest.raises(UnknownIdError):
            vocab.encode(queries)


def test_vocabulary_save_load(tmp_path):
    vocab = Vocabulary(["b", "a", "c"], name="item_id")
    vocab.save(tmp_path / "v.parquet")
    assert Vocabulary.load(tmp_path / "v.parquet") == vocab


def test_vocabulary_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "a"])


pairs = st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)), min_size=0, max_size=150)


def _frame(edges: list[tuple[int, int]]) -> pl.DataFrame:
    unique = sorted(set(edges))
    return pl.DataFrame({"user_id": [f"u{u}" for u, _ in unique], "item_id": [f"i{i}" for _, i in unique]},
                        schema={"user_id": pl.String, "item_id": pl.String})


@given(pairs, st.integers(1, 5), st.integers(1, 5))
@settings(max_examples=80, deadline=None)
def test_k_core_satisfies_both_thresholds_and_is_idempotent(edges, min_user, min_item):
    frame = _frame(edges)
    pruned, _ = k_core(frame, min_user, min_item)
    if pruned.height:
        assert pruned.group_by("user_id").len()["len"].min() >= min_user
        assert pruned.group_by("item_id").len()["len"].min() >= min_item
    again, rounds = k_core(pruned, min_user, min_item)
    assert again.equals(pruned) and rounds == 0


@given(pairs, st.integers(1, 4), st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_k_core_keeps_the_largest_core(edges, min_user, min_item):
    """Every (user, item) of a brute-force core survives: pruning removes nothing it should keep."""
    frame = _frame(edges)
    pruned, _ = k_core(frame, min_user, min_item)
    kept = set(zip(pruned["user_id"], pruned["item_id"]))
    # Reference: naive loop on Python sets.
    ref = set(zip(frame["user_id"], frame["item_id"]))
    while True:
        users = {u for u, _ in ref}
        items = {i for _, i in ref}
        bad_u = {u for u in users if sum(1 for x, _ in ref if x == u) < min_user}
        bad_i = {i for i in items if sum(1 for _, y in ref if y == i) < min_item}
        if not bad_u and not bad_i:
            break
        ref = {(u, i) for u, i in ref if u not in bad_u and i not in bad_i}
    assert kept == ref
    assert np.all(pruned["user_id"].is_not_null().to_numpy())


def test_dense_codes_fall_back_to_exact_on_a_hash_collision(monkeypatch):
    """Force every hash to collide: the exact path must still separate the ids."""
    from booktower.data import pruning

    column = pl.Series("user_id", ["a", "b", "a", "c"])
    real_hash = pl.Series.hash

    def colliding(self, seed=0, *args, **kwargs):  # the first hash collides for everything, the check does not
        return pl.Series([0] * len(self), dtype=pl.UInt64) if seed == 0 else real_hash(self, seed, *args, **kwargs)

    monkeypatch.setattr(pl.Series, "hash", colliding)
    codes, n = pruning._dense_codes(column)
    assert n == 3 and codes[0] == codes[2] and len({codes[0], codes[1], codes[3]}) == 3
