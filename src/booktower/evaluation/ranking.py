"""Exact full-catalogue top-K: score every item for every user (chunked), mask known items, take the top K."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from booktower.data.types import Interactions, Ragged

ScoreFn = Callable[[np.ndarray], torch.Tensor]
"""user indices (U,) -> scores (U, n_items). Any model or baseline that can score a chunk of users."""


def known_items(n_users: int, *parts: Interactions) -> Ragged:
    """Per user, the sorted distinct items of the given parts (what evaluation must mask)."""
    users = np.concatenate([p.user for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    items = np.concatenate([p.item for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    keep = np.ones(len(users), dtype=bool)
    keep[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    users, items = users[keep], items[keep]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=offsets[1:])
    return Ragged(offsets, items)


@dataclass(frozen=True)
class TopK:
    """Masked top-K lists of the evaluated users."""

    users: np.ndarray  # (U,) int64
    items: np.ndarray  # (U, K) int64, best first
    scores: np.ndarray  # (U, K) float32


def rank_top_k(
    score_fn: ScoreFn, users: np.ndarray, mask: Ragged, k: int, n_items: int, chunk: int = 4096,
    progress: bool = False,
) -> TopK:
    """Top-k of every user over the full catalogue with `mask` rows set to -inf before the cut."""
    k = min(k, n_items)
    out_items = np.empty((len(users), k), dtype=np.int64)
    out_scores = np.empty((len(users), k), dtype=np.float32)
    starts = range(0, len(users), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="ranking", unit="chunk", leave=False)
    for start in starts:
        batch = users[start : start + chunk]
        scores = score_fn(batch).float()  # (U, n_items)
        if scores.shape != (len(batch), n_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {(len(batch), n_items)}")
        lengths = mask.offsets[batch + 1] - mask.offsets[batch]
        rows = np.repeat(np.arange(len(batch)), lengths)
        cols = np.concatenate([mask.row(u) for u in batch]) if lengths.sum() else np.zeros(0, dtype=np.int64)
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")
        top = torch.topk(scores, k, dim=1, sorted=True)
        out_items[start : start + len(batch)] = top.indices.cpu().numpy()
        out_scores[start : start + len(batch)] = top.values.cpu().numpy()
    return TopK(users, out_items, out_scores)
