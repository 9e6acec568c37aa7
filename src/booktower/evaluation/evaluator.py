"""evaluate_split: exact full-catalogue evaluation of any score function on the validation or test part."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from booktower.data.types import Interactions, PreparedData, Ragged
from booktower.evaluation import metrics as m
from booktower.evaluation.ranking import ScoreFn, TopK, known_items, rank_top_k

log = logging.getLogger(__name__)

Part = Literal["validation", "test"]
PER_USER_METRICS = ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP", "popularity")
"""Per-user metric columns, each written as NAME@K; their means are the headline metrics."""


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics (means over users plus coverage), the per-user table and the top-K lists they came from."""

    part: str
    ks: list[int]
    metrics: dict[str, float]
    per_user: pl.DataFrame  # user_id, item_id, user, n_train, n_relevant, rank, NAME@K ...
    top_k: TopK
    extra: dict[str, float] = field(default_factory=dict)  # n_users, n_items


def parts_for(data: PreparedData, part: Part) -> tuple[Interactions, list[Interactions]]:
    """(held-out interactions, known interactions to mask). Validation masks train; test masks train + valid."""
    split = data.split
    if part == "validation":
        return split.valid, [split.train]
    if part == "test":
        return split.test, [split.train, split.valid]
    raise ValueError(f"part must be 'validation' or 'test', got {part!r}")


def _evaluated_users(truth: Ragged, users: np.ndarray | None) -> np.ndarray:
    """Users with at least one held-out item (optionally restricted to `users`), in index order."""
    has_truth = np.flatnonzero(np.diff(truth.offsets) > 0)
    if users is None:
        return has_truth
    return np.intersect1d(np.asarray(users, dtype=np.int64), has_truth)


def per_user_metrics(
    top_items: np.ndarray, hits: np.ndarray, n_rel: np.ndarray, ks: list[int], percentiles: np.ndarray,
) -> dict[str, np.ndarray]:
    """NAME@K -> (U,) values for every metric in PER_USER_METRICS and every K."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"HR@{k}"] = m.hit_rate(hits, k)
        out[f"Recall@{k}"] = m.recall(hits, n_rel, k)
        out[f"Precision@{k}"] = m.precision(hits, k)
        out[f"NDCG@{k}"] = m.ndcg(hits, n_rel, k)
        out[f"MRR@{k}"] = m.mrr(hits, k)
        out[f"MAP@{k}"] = m.average_precision(hits, n_rel, k)
        out[f"popularity@{k}"] = m.popularity_bias(top_items, k, percentiles)
    return out


def summarise(columns: dict[str, np.ndarray], top_items: np.ndarray, ks: list[int], n_items: int,
              valid: np.ndarray | None = None) -> dict[str, float]:
    """Means of the per-user columns plus catalogue coverage@K (a property of all lists together)."""
    metrics = {name: float(values.mean()) if len(values) else 0.0 for name, values in columns.items()}
    for k in ks:
        metrics[f"coverage@{k}"] = m.coverage(top_items, k, n_items, valid)
    return metrics


def _per_user_table(
    data: PreparedData, users: np.ndarray, mask_counts: np.ndarray, top_k: TopK,
    columns: dict[str, np.ndarray], truth: Ragged, item_counts: np.ndarray, hits: np.ndarray,
) -> pl.DataFrame:
    # The last held-out item (time order) names the row; with leave-last-out it is the only one.
    last_item = truth.values[truth.offsets[users + 1] - 1] if len(users) else np.zeros(0, dtype=np.int64)
    train_counts = np.bincount(data.split.train.user, minlength=data.n_users)
    frame = pl.DataFrame({
        "user_id": data.users.decode(users),
        "item_id": data.items.decode(last_item),
        "user": users,
        "n_train": train_counts[users].astype(np.int64),
        "n_known": mask_counts[users].astype(np.int64),
        "n_relevant": np.diff(truth.offsets)[users].astype(np.int64),
    })
    rank = top_k.truth_rank if top_k.truth_rank is not None else rank_in_lists(hits)
    frame = frame.with_columns(pl.Series("rank", rank, dtype=pl.Int64).replace(-1, None))
    frame = frame.with_columns(_item_columns(data, last_item, item_counts))
    return frame.with_columns([pl.Series(name, values) for name, values in columns.items()])


def popularity_groups(counts: np.ndarray) -> np.ndarray:
    """Per item "head" / "torso" / "tail": the most popular items holding the first third of all interactions,
    the next third, and the rest (so each group carries about the same interaction volume)."""
    order = np.argsort(-counts, kind="stable")
    share = np.cumsum(counts[order]) / max(counts.sum(), 1)
    labels = np.where(share <= 1 / 3, "head", np.where(share <= 2 / 3, "torso", "tail"))
    if len(labels):
        labels[0] = "head"  # the single most popular item is head even when it alone holds over a third
    out = np.empty(len(counts), dtype=object)
    out[order] = labels
    return out


def _item_columns(data: PreparedData, items: np.ndarray, counts: np.ndarray) -> list[pl.Series]:
    """Held-out item popularity, its head/torso/tail group and (when the data has them) its category."""
    columns = [
        pl.Series("item_popularity", counts[items].astype(np.int64)),
        pl.Series("popularity_group", popularity_groups(counts)[items].astype(str), dtype=pl.String),
    ]
    if data.category_names:
        cat = data.item_category[items]
        # a book without a category at the configured level (-1) gets a null: gathered by polars, since a
        # numpy object array that starts with None is refused as a String column
        columns.append(pl.Series("category", list(data.category_names), dtype=pl.String)
                       .gather(pl.Series(np.where(cat >= 0, cat, None).tolist(), dtype=pl.Int64))
                       .rename("category"))
    return columns


def rank_in_lists(hits: np.ndarray) -> np.ndarray:
    """1-based rank of the first held-out item within each top-K list, -1 when absent. (U, K) -> (U,)."""
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, -1).astype(np.int64)


def _warn_short_lists(valid: np.ndarray, part: Part, n_items: int) -> None:
    """Where a reader has read nearly the whole catalogue, fewer than K books are left to rank and HR@K is
    near-trivially 1: say so rather than let the metric look like skill."""
    short = int((~valid.all(axis=1)).sum()) if valid.size else 0
    if short:
        _warn_once(part, short, len(valid), valid.shape[1], n_items)


@functools.lru_cache(maxsize=64)  # once per situation, not once per epoch's validation pass
def _warn_once(part: str, short: int, n_users: int, k: int, n_items: int) -> None:
    log.warning("%s: %d of %d readers have fewer than %d unread books among the %d in the catalogue; their "
                "lists are short and their HR@%d is near-trivial (a larger catalogue or smaller K fixes it)",
                part, short, n_users, k, n_items, k)


def evaluate_split(
    score_fn: ScoreFn, data: PreparedData, part: Part, ks: list[int], chunk: int = 4096,
    users: np.ndarray | None = None, progress: bool = False, full_rank: bool = False,
) -> EvaluationResult:
    """Rank the full catalogue for every user with a held-out item in `part` and compute every metric.

    Validation masks each user's train items; test masks train + validation items. Nothing is sampled.
    Popularity percentiles come from the masked (known) interactions only, so no held-out item is counted.
    The per-user `rank` is the held-out item's 1-based rank: over the whole catalogue with `full_rank` (one
    extra comparison pass, about as costly as the scoring itself), else within the top max(ks) (null beyond).
    """
    ks = sorted({int(k) for k in ks})
    truth_part, known_parts = parts_for(data, part)
    truth = Ragged.by_row(truth_part.user, truth_part.item, data.n_users)  # held-out books, oldest first
    mask = known_items(data.n_users, *known_parts)
    evaluated = _evaluated_users(truth, users)
    top_k = rank_top_k(score_fn, evaluated, mask, max(ks), data.n_items, chunk=chunk, progress=progress,
                       truth=truth if full_rank else None)
    counts = np.bincount(np.concatenate([p.item for p in known_parts]), minlength=data.n_items)
    hits = m.hit_matrix(top_k.items, truth, evaluated)  # (U, K)
    n_rel = np.diff(truth.offsets)[evaluated]
    columns = per_user_metrics(top_k.items, hits, n_rel, ks, m.popularity_percentiles(counts))
    valid = top_k.scores > -np.inf
    metrics = summarise(columns, top_k.items, ks, data.n_items, valid)
    _warn_short_lists(valid, part, data.n_items)
    table = _per_user_table(data, evaluated, np.diff(mask.offsets), top_k, columns, truth, counts, hits)
    extra = {"n_users": float(len(evaluated)), "n_items": float(data.n_items)}
    return EvaluationResult(part, ks, metrics, table, top_k, extra)
