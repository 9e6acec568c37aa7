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


def block_max_top_k(scores: torch.Tensor, k: int, width: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of each row (values, indices; best first) through block maxima.

    A block of `width` columns that holds one of a row's top-k items has a maximum at least the k-th best
    score, so the top-k all lie in the k blocks with the largest maxima. One max-reduction over the scores
    replaces torch.topk's scan of every column, and the final top-k reads only k * width candidates: on a GPU
    this is ~4x faster for a million items. Among tied scores it may pick other items than torch.topk.
    """
    rows, n = scores.shape
    k = min(k, n)
    width = next((w for w in range(width, 2 * width) if n % w == 0), width)  # a divisor needs no padded copy
    blocks = -(-n // width)
    if blocks <= k:
        return torch.topk(scores, k, dim=1, sorted=True)
    if blocks * width != n:
        scores = torch.nn.functional.pad(scores, (0, blocks * width - n), value=float("-inf"))
    grid = scores.view(rows, blocks, width)
    best_blocks = torch.topk(grid.amax(dim=2), k, dim=1).indices  # (rows, k)
    candidates = grid.gather(1, best_blocks[:, :, None].expand(-1, -1, width)).flatten(1)  # (rows, k * width)
    values, pick = torch.topk(candidates, k, dim=1, sorted=True)
    return values, best_blocks.gather(1, pick // width) * width + pick % width


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk on the CPU (fastest there); block maxima on a GPU for large catalogues."""
    if scores.device.type == "cuda" and scores.shape[1] >= 100_000:
        return block_max_top_k(scores, k)
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1, sorted=True)
    return top.values, top.indices


def _truth_rank(scores: torch.Tensor, truth: Ragged, batch: np.ndarray) -> np.ndarray:
    """1 + number of unmasked items scored strictly above the user's best held-out item (optimistic on ties)."""
    rows, cols = gather_rows(truth, batch)
    rows_t = torch.from_numpy(rows).to(scores.device)
    best = torch.full((len(batch),), float("-inf"), device=scores.device)
    if len(rows):
        cols_t = torch.from_numpy(cols).to(scores.device)
        best = best.scatter_reduce(0, rows_t, scores[rows_t, cols_t], reduce="amax")
    return ((scores > best[:, None]).sum(dim=1) + 1).cpu().numpy().astype(np.int64)


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
        # Mask and cut where the scores live (a GPU keeps its (U, n_items) block); only the top-K crosses over.
        rows, cols = gather_rows(mask, batch)
        scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = float("-inf")
        values, indices = top_k(scores, k)
        out_items[start : start + len(batch)] = indices.cpu().numpy()
        out_scores[start : start + len(batch)] = values.cpu().numpy()
        if out_rank is not None:
            out_rank[start : start + len(batch)] = _truth_rank(scores, truth, batch)
    return TopK(users, out_items, out_scores, out_rank)
