"""Ranking metrics as pure functions of (top-K item lists, held-out items). One held-out item per user."""

from __future__ import annotations

import numpy as np


def hit_positions(top_items: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """0-based rank of each user's held-out item in its list, or -1 when absent. (U, K), (U,) -> (U,)."""
    hits = top_items == truth[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1), -1)


def hit_rate(positions: np.ndarray, k: int) -> np.ndarray:
    """Per user 1 if the held-out item is in the top k."""
    return ((positions >= 0) & (positions < k)).astype(np.float64)


def ndcg(positions: np.ndarray, k: int) -> np.ndarray:
    """Per user 1 / log2(rank + 2) within the top k (the ideal DCG of one relevant item is 1)."""
    inside = (positions >= 0) & (positions < k)
    return np.where(inside, 1.0 / np.log2(np.maximum(positions, 0) + 2.0), 0.0)


def mrr(positions: np.ndarray, k: int) -> np.ndarray:
    """Per user 1 / (rank + 1) within the top k."""
    inside = (positions >= 0) & (positions < k)
    return np.where(inside, 1.0 / (np.maximum(positions, 0) + 1.0), 0.0)


def coverage(top_items: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top k."""
    return float(len(np.unique(top_items[:, :k])) / n_items) if n_items else 0.0
