"""Lists for many known readers at once (`booktower recommend --bundle B --all-users --out FILE`): what
`/recommendations/{user_id}` answers each of them, for newsletters and other offline jobs.

Ranked exactly over the whole catalogue in blocks of readers (a matrix product and a top-k per block), with the
reader's books masked and an optional category restriction, as the service filters them. The service's own
answer equals these lists when its index is exact, up to float rounding (a block's matrix product and one reader's
product round differently in the last bits, so two books whose scores agree to ~1e-5 may swap places), and
differs from them by the ANN index's misses otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import torch

from booktower.serving.retrieve import deepen, first_per_group
from booktower.serving.service import Recommender, check_cap


def batch_lists(rec: Recommender, users: np.ndarray, k: int, categories: list[str] | None = None,
                chunk: int = 2048, max_per_author: int | None = None) -> pl.DataFrame:
    """(user_id, rank, item_id, score, title, author) for the readers at indices `users`: each one's top `k`
    unread books (fewer where fewer are left), restricted to books tagged with any of `categories`, at most
    `max_per_author` by one author; withdrawn books are never listed."""
    frames = [_rows(rec, block, top_scores, top_items)
              for block, top_scores, top_items in ranked_blocks(rec, users, k, categories, chunk, max_per_author)]
    empty = np.zeros((0, 0))
    return pl.concat(frames) if frames else _rows(rec, np.zeros(0, np.int64), empty, empty.astype(np.int64))


def ranked_blocks(rec: Recommender, users: np.ndarray, k: int, categories: list[str] | None = None,
                  chunk: int = 2048, max_per_author: int | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(reader indices, (b, k) scores, (b, k) item indices) per block of readers, as `batch_lists` lists them; a
    slot past a reader's last candidate has score -inf."""
    cap = check_cap(max_per_author)
    parts = rec.parts
    has_authors = bool((rec.author_groups >= 0).any())
    allowed = rec.category_items(list(categories or []))
    blocked = None
    if allowed is not None or parts.withdrawn.any():
        blocked = torch.from_numpy(parts.withdrawn.copy())
        if allowed is not None:
            outside = torch.ones(rec.n_items, dtype=torch.bool)
            outside[torch.from_numpy(allowed)] = False
            blocked |= outside
    items_t = torch.from_numpy(np.ascontiguousarray(parts.item_vectors, dtype=np.float32)).T  # (d, n)
    for start in range(0, len(users), chunk):
        block = np.asarray(users[start : start + chunk], dtype=np.int64)
        scores = torch.from_numpy(np.ascontiguousarray(parts.user_vectors[block], dtype=np.float32)) @ items_t
        owner, read = _seen_pairs(parts.seen, block)
        scores[torch.from_numpy(owner), torch.from_numpy(read)] = -torch.inf  # (b, n) the reader's books out
        if blocked is not None:
            scores[:, blocked] = -torch.inf
        if cap is None or not has_authors:  # a catalogue without authors: the cap caps nothing
            top_scores, top_items = (t.numpy() for t in torch.topk(scores, min(k, rec.n_items), dim=1))  # (b, k)
        else:
            top_scores, top_items = _capped_top(scores, k, rec.author_groups, cap)
        yield block, top_scores, top_items


def _capped_top(scores: torch.Tensor, k: int, groups: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best `k` with at most `cap` per group, from a list deepened until every row has k (or holds
    every candidate); a slot left empty is -inf."""
    def attempt(depth: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], bool]:
        deep_scores, deep_items = (t.numpy() for t in torch.topk(scores, depth, dim=1))  # (b, depth)
        keep = np.stack([first_per_group(groups[row], cap) for row in deep_items]) & np.isfinite(deep_scores)
        return (deep_scores, deep_items, keep), bool((keep.sum(axis=1) >= k).all())

    deep_scores, deep_items, keep = deepen(4 * k, scores.shape[1], attempt)
    top_scores = np.full((len(deep_items), k), -np.inf, dtype=np.float32)
    top_items = np.zeros((len(deep_items), k), dtype=np.int64)
    for row, kept in enumerate(keep):
        chosen = np.flatnonzero(kept)[:k]
        top_scores[row, : len(chosen)] = deep_scores[row, chosen]
        top_items[row, : len(chosen)] = deep_items[row, chosen]
    return top_scores, top_items


def _seen_pairs(seen, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row within the block, item) for every book each reader of the block has read."""
    lengths = seen.offsets[block + 1] - seen.offsets[block]
    owner = np.repeat(np.arange(len(block)), lengths)
    read = np.concatenate([seen.row(int(u)) for u in block]) if len(block) else np.zeros(0, np.int64)
    return owner, read.astype(np.int64)


def _rows(rec: Recommender, block: np.ndarray, scores: np.ndarray, items: np.ndarray) -> pl.DataFrame:
    """One row per (reader, rank) whose book is a real candidate (a masked -inf slot is no recommendation)."""
    keep = np.isfinite(scores)
    reader, rank = np.nonzero(keep)
    chosen = items[keep]
    metadata = rec.parts.metadata
    return pl.DataFrame({
        "user_id": pl.Series(rec.parts.users.decode(block[reader]), dtype=pl.String),
        "rank": (rank + 1).astype(np.int32),
        "item_id": pl.Series(rec.parts.items.decode(chosen), dtype=pl.String),
        "score": scores[keep].astype(np.float32),
        "title": metadata["title"].gather(chosen).fill_null(""),
        "author": metadata["author"].gather(chosen).fill_null(""),
    })
