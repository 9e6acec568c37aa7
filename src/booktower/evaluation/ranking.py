"""Exact full-catalogue top-K: score every item for every user (chunked), mask known items, take the top K."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from booktower.data.types import Interactions, Ragged

ScoreFn = Callable[[np.ndarray], torch.Tensor]
"""user indices (U,) -> scores (U, n_items). Any model or baseline that can score a chunk of users.
The returned tensor is masked in place, so it must not share memory with state the caller keeps."""


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


def gather_rows(ragged: Ragged, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in `rows`, value) pairs of the selected ragged rows, without a Python loop."""
    starts = ragged.offsets[rows]
    lengths = ragged.offsets[rows + 1] - starts
    total = int(lengths.sum())
    positions = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    if total == 0:
        return positions, np.zeros(0, dtype=np.int64)
    # index of every value: its row start plus its offset inside the row
    row_begin = np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = np.repeat(starts, lengths) + (np.arange(total, dtype=np.int64) - row_begin)
    return positions, ragged.values[index]


@dataclass(frozen=True)
class TopK:
    """Masked top-K lists of the evaluated users."""

    users: np.ndarray  # (U,) int64
    items: np.ndarray  # (U, K) int64, best first
    scores: np.ndarray  # (U, K) float32
    truth_rank: np.ndarray | None = None  # (U,) int64 1-based full-catalogue rank of the best held-out item


def _truth_rank(scores: torch.Tensor, truth: Ragged, batch: np.ndarray) -> np.ndarray:
    """1 + number of unmasked items scored strictly above the user's best held-out item (optimistic on ties)."""
    rows, cols = gather_rows(truth, batch)
    rows_t = torch.from_numpy(rows)
    best = torch.full((len(batch),), float("-inf"))
    if len(rows):
        best = best.scatter_reduce(0, rows_t, scores[rows_t, torch.from_numpy(cols)], reduce="amax")
    return ((scores > best[:, None]).sum(dim=1) + 1).numpy().astype(np.int64)


def rank_top_k(
    score_fn: ScoreFn, users: np.ndarray, mask: Ragged, k: int, n_items: int, chunk: int = 4096,
    progress: bool = False, truth: Ragged | None = None,
) -> TopK:
    """Top-k of every user over the full catalogue with `mask` rows set to -inf before the cut.

    With `truth` (held-out items per user index), also the exact full-catalogue rank of each user's best
    held-out item, so rank distributions need no extra pass.
    """
    k = min(k, n_items)
    out_items = np.empty((len(users), k), dtype=np.int64)
    out_scores = np.empty((len(users), k), dtype=np.float32)
    out_rank = np.empty(len(users), dtype=np.int64) if truth is not None else None
    starts = range(0, len(users), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="ranking", unit="chunk", leave=False)
    for start in starts:
        batch = users[start : start + chunk]
        with torch.no_grad():
            scores = score_fn(batch).float()  # (U, n_items)
        if scores.shape != (len(batch), n_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {(len(batch), n_items)}")
        if scores._base is not None or not scores.is_contiguous():
            scores = scores.clone()  # masking writes in place: never into a caller's buffer or an expanded view
        scores = scores.cpu()
        rows, cols = gather_rows(mask, batch)
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")
        top = torch.topk(scores, k, dim=1, sorted=True)
        out_items[start : start + len(batch)] = top.indices.numpy()
        out_scores[start : start + len(batch)] = top.values.numpy()
        if out_rank is not None:
            out_rank[start : start + len(batch)] = _truth_rank(scores, truth, batch)
    return TopK(users, out_items, out_scores, out_rank)
