"""Ranking metrics as small pure functions of (top-K hit matrix, number of held-out items per user).

`hits[u, r]` is True when the item at 0-based rank r of user u's list is one of u's held-out items. Every
function returns one value per user (the caller averages), so per-user tables, bootstrap intervals and paired
tests all come from the same numbers. With one held-out item per user (leave-last-out) HR@K equals Recall@K.
"""

from __future__ import annotations

import numpy as np

from booktower.data.types import Ragged
from booktower.evaluation.ranking import gather_rows


def hit_matrix(top_items: np.ndarray, truth: Ragged, users: np.ndarray) -> np.ndarray:
    """(U, K) bool: is `top_items[u, r]` among `truth.row(users[u])`? Vectorised through one sorted key set."""
    n_rows = len(users)
    lengths = truth.offsets[users + 1] - truth.offsets[users]
    if top_items.size == 0 or lengths.sum() == 0:
        return np.zeros(top_items.shape, dtype=bool)
    width = int(max(top_items.max(), truth.values.max())) + 1
    rows, cols = gather_rows(truth, users)
    keys = np.unique(rows * width + cols)  # sorted
    candidates = np.arange(n_rows, dtype=np.int64)[:, None] * width + top_items  # (U, K)
    # a binary search per candidate: far cheaper than np.isin's sort of candidates and keys together
    found = np.minimum(np.searchsorted(keys, candidates), len(keys) - 1)
    return keys[found] == candidates


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1 if any held-out item is in the top k."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of the user's held-out items found in the top k (0 for a user with none)."""
    found = hits[:, :k].sum(axis=1)
    return np.divide(found, n_relevant, out=np.zeros(len(hits)), where=n_relevant > 0)


def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """Held-out items in the top k, divided by k."""
    return hits[:, :k].sum(axis=1) / float(k)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)  # (k,) 1/log2(rank + 2) for 0-based ranks


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG of the top k over the ideal DCG (all held-out items first, at most k of them)."""
    k_eff = min(k, hits.shape[1])
    disc = _discounts(k)
    dcg = hits[:, :k_eff].astype(np.float64) @ disc[:k_eff]
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])  # ideal_cum[n] = DCG of n relevant items on top
    idcg = ideal_cum[np.minimum(n_relevant, k)]
    return np.divide(dcg, idcg, out=np.zeros(len(hits)), where=idcg > 0)


def mrr(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / (rank + 1) of the first held-out item within the top k, else 0."""
    window = hits[:, :k]
    found = window.any(axis=1)
    first = window.argmax(axis=1)
    return np.where(found, 1.0 / (first + 1.0), 0.0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k: mean of precision@i over the ranks i of hits in the top k, divided by min(n_relevant, k)."""
    window = hits[:, :k].astype(np.float64)
    ranks = np.arange(1, window.shape[1] + 1, dtype=np.float64)
    precision_at = np.cumsum(window, axis=1) / ranks  # (U, k)
    total = (precision_at * window).sum(axis=1)
    denom = np.minimum(n_relevant, k).astype(np.float64)
    return np.divide(total, denom, out=np.zeros(len(hits)), where=denom > 0)


def coverage(top_items: np.ndarray, k: int, n_items: int, valid: np.ndarray | None = None) -> float:
    """Share of the catalogue that appears in at least one user's top k.

    `valid` (same shape as `top_items`) marks real recommendations: masked entries, which fill a list when
    fewer than k candidates remain, are not shown to anyone and do not count.
    """
    if not n_items:
        return 0.0
    shown = np.zeros(n_items, dtype=bool)
    cut = top_items[:, :k]
    shown[cut if valid is None else cut[valid[:, :k]]] = True
    return float(shown.sum() / n_items)


def popularity_percentiles(counts: np.ndarray) -> np.ndarray:
    """Per item, the percentile (0-100] of its interaction count among all items (ties share the top rank)."""
    n = len(counts)
    if n == 0:
        return np.zeros(0)
    order = np.sort(counts)
    # share of items whose count is <= this item's count: 100 for the most popular, small for the rarest.
    return 100.0 * np.searchsorted(order, counts, side="right") / n


def popularity_bias(top_items: np.ndarray, k: int, percentiles: np.ndarray) -> np.ndarray:
    """Per user, the mean popularity percentile of the recommended top k items (higher = more mainstream)."""
    return percentiles[top_items[:, :k]].mean(axis=1)
