"""Filtered retrieval: seen items and business filters are applied before the cut to k, never after.

The index is asked for more candidates than needed (`overfetch` x k, growing), the filters remove some, and the
first k survivors are returned. When the index runs out of candidates (an approximate index can miss rows, or
a filter keeps only a few items) the allowed rows are scored exactly, so a request never gets fewer than k
results while k allowed items exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from booktower.serving.index import RetrievalIndex

T = TypeVar("T")


@dataclass(frozen=True)
class Hits:
    """One query's results, best first."""

    ids: np.ndarray  # (m,) int64 item indices
    scores: np.ndarray  # (m,) float32


def allowed_mask(n_items: int, exclude: np.ndarray | None = None, only: np.ndarray | None = None) -> np.ndarray | None:
    """A boolean (n_items,) mask of items that may be returned, or None when everything may."""
    if (exclude is None or exclude.size == 0) and only is None:
        return None
    mask = np.ones(n_items, dtype=bool) if only is None else np.zeros(n_items, dtype=bool)
    if only is not None:
        mask[only] = True
    if exclude is not None and exclude.size:
        mask[exclude] = False
    return mask


def search_filtered(
    index: RetrievalIndex, vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None,
    overfetch: int = 4, near_excluded: int | None = None,
) -> Hits:
    """Top-k of one query (d,) among the allowed items. `vectors` (n, d) are the index's rows (for the exact fallback).

    `near_excluded`: how many of the excluded items may rank near the top (a reader's own books sit beside their
    vector); the rest are taken to be spread over the ranking (withdrawn books, a category filter), which the
    n / n_allowed scaling covers. None: every excluded item may."""
    n = len(index)
    if allowed is None:
        scores, ids = index.search(query, k)
        keep = ids[0] >= 0
        if keep.sum() >= min(k, n):
            return Hits(ids[0][keep][:k], scores[0][keep][:k])
        allowed = np.ones(n, dtype=bool)
    n_allowed = int(allowed.sum())
    want = min(k, n_allowed)
    if want == 0:
        return Hits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    # A filter that keeps few items is cheaper to score exactly than to dig for through the index.
    if n_allowed <= 4 * k * overfetch:
        return _exact_among(vectors, query, np.flatnonzero(allowed), want)
    # Expect to discard the excluded share: scale by n / n_allowed, plus room for the excluded items near the top.
    near = n - n_allowed if near_excluded is None else min(near_excluded, n - n_allowed)
    first = int(np.ceil(k * overfetch * n / n_allowed)) + min(near, n // 10)

    def attempt(fetch: int) -> tuple[Hits | None, bool]:
        scores, ids = index.search(query, fetch)
        valid = ids[0] >= 0
        ids, scores = ids[0][valid], scores[0][valid]
        keep = allowed[ids]
        enough = keep.sum() >= want
        return (Hits(ids[keep][:want], scores[keep][:want]) if enough else None), enough

    # An index that runs out of candidates (an approximate one can miss rows) leaves the exact scores.
    return deepen(first, n, attempt) or _exact_among(vectors, query, np.flatnonzero(allowed), want)


def deepen(first: int, most: int, attempt: Callable[[int], tuple[T, bool]], growth: int = 4) -> T:
    """`attempt(depth)` at depth `first`, then `growth` times deeper each time, up to `most`, until it says it has
    enough: what a filtered or capped search does, since how deep k survivors lie is known only by looking.
    Returns the first attempt that had enough, or the deepest one."""
    depth = min(first, most)
    while True:
        result, enough = attempt(depth)
        if enough or depth >= most:
            return result
        depth = min(most, max(depth * growth, depth + 1))


def _exact_among(vectors: np.ndarray, query: np.ndarray, candidates: np.ndarray, k: int) -> Hits:
    scores = vectors[candidates] @ np.asarray(query, dtype=np.float32).reshape(-1)  # (m,)
    k = min(k, len(candidates))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(candidates) else np.arange(len(candidates))
    top = top[np.lexsort((candidates[top], -scores[top]))]  # best first, ties by index (deterministic)
    return Hits(candidates[top].astype(np.int64), scores[top].astype(np.float32))


def first_per_group(groups: np.ndarray, cap: int) -> np.ndarray:
    """A keep-mask over a ranked list: the first `cap` entries of each group (e.g. an author), every entry whose
    group is -1 (unknown: no cap). Order is the list's own, best first."""
    groups = np.asarray(groups, dtype=np.int64)
    order = np.argsort(groups, kind="stable")  # each group's entries together, in rank order
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(groups) else np.zeros(0, np.int64)
    run_lengths = np.diff(np.r_[starts, len(groups)])
    position = np.empty(len(groups), dtype=np.int64)
    position[order] = np.arange(len(groups)) - np.repeat(starts, run_lengths)  # rank within its group
    return (position < cap) | (groups < 0)


def search_capped(
    index: RetrievalIndex, vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None,
    groups: np.ndarray, cap: int, overfetch: int = 4, near_excluded: int | None = None,
) -> Hits:
    """Top-k among the allowed items with at most `cap` per group (`groups`: (n,) codes, -1 = no group): a
    deeper list is fetched until k survive the cap, or every allowed item has been seen."""
    n_allowed = len(vectors) if allowed is None else int(allowed.sum())

    def attempt(fetch: int) -> tuple[Hits, bool]:
        hits = search_filtered(index, vectors, query, fetch, allowed, overfetch, near_excluded)
        keep = first_per_group(groups[hits.ids], cap)
        return Hits(hits.ids[keep][:k], hits.scores[keep][:k]), keep.sum() >= k

    return deepen(k * overfetch, n_allowed, attempt)
