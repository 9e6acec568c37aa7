"""Recommendation audit: sampled readers' recent history beside their top-K, with category/author match rates."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from booktower.data.types import PreparedData
from booktower.evaluation.evaluator import Part, parts_for
from booktower.evaluation.ranking import TopK

_LIST_COLUMNS = ("item_id", "title", "author")


def _histories(data: PreparedData, part: Part) -> dict[int, np.ndarray]:
    """User index -> items known before the held-out item, oldest first (train, then validation for test)."""
    _, known = parts_for(data, part)
    users = np.concatenate([p.user for p in known])
    items = np.concatenate([p.item for p in known])
    times = np.concatenate([p.timestamp for p in known])
    seq = np.arange(len(users))  # parts are concatenated in time order, so ties keep that order
    order = np.lexsort((seq, times, users))
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    return {int(g[0]): it for g, it in zip(np.split(users, bounds), np.split(items, bounds)) if len(g)}


def _item_category(data: PreparedData) -> list[str | None]:
    names = list(data.category_names)
    return [names[c] if c >= 0 else None for c in data.item_category.tolist()]


def _describe(items: np.ndarray, meta: pl.DataFrame, category: list[str | None]) -> list[dict[str, Any]]:
    rows = meta[items.tolist()].select([c for c in _LIST_COLUMNS if c in meta.columns]).to_dicts()
    for row, item in zip(rows, items.tolist()):
        row["category"] = category[item]
    return rows


def recommended_items(top_k: TopK, row: int, k: int) -> np.ndarray:
    """The row's top-k without masked entries (-inf: known books that fill the tail of a short list)."""
    return top_k.items[row, :k][top_k.scores[row, :k] > -np.inf]


def match_rates(top_items: np.ndarray, users: np.ndarray, histories: dict[int, np.ndarray],
                labels: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """Share of recommended items whose label (-1 = none) appears among the reader's history labels.

    `valid` (same shape as `top_items`) marks the entries that are real recommendations; masked ones are skipped.
    """
    matched = total = 0
    valid = np.ones(top_items.shape, dtype=bool) if valid is None else valid
    for row, user, keep in zip(top_items, users, valid):
        seen = set(labels[histories.get(int(user), np.zeros(0, dtype=np.int64))].tolist()) - {-1}
        recommended = labels[row[keep]]
        known = recommended >= 0
        matched += int(np.isin(recommended[known], list(seen)).sum()) if seen else 0
        total += int(known.sum())
    return matched / total if total else None


def recommendation_audit(
    top_k: TopK, truth_items: np.ndarray, data: PreparedData, part: Part, rng: np.random.Generator,
    n_users: int = 5, k: int = 10, history_shown: int = 5, rate_users: int = 2000,
) -> dict[str, Any]:
    """JSON-ready audit. `truth_items[r]` is the held-out item of `top_k.users[r]`."""
    from booktower.evaluation.diagnostics import label_ids

    histories = _histories(data, part)
    category = _item_category(data) if data.category_names else [None] * data.n_items
    meta = data.item_metadata
    shown = rng.choice(len(top_k.users), size=min(n_users, len(top_k.users)), replace=False)
    examples = []
    for r in sorted(shown.tolist()):
        user = int(top_k.users[r])
        recent = histories.get(user, np.zeros(0, dtype=np.int64))[-history_shown:][::-1]
        items = recommended_items(top_k, r, k)
        recommended = _describe(items, meta, category)
        for row, item in zip(recommended, items.tolist()):
            row["held_out"] = item == int(truth_items[r])
        examples.append({
            "user_id": data.users.decode([user])[0], "n_history": len(histories.get(user, [])),
            "held_out": _describe(np.array([truth_items[r]]), meta, category)[0],
            "recent_history": _describe(recent, meta, category), "recommended": recommended,
        })
    sample = rng.choice(len(top_k.users), size=min(rate_users, len(top_k.users)), replace=False)
    rates: dict[str, Any] = {"k": k, "n_users": len(sample), "of_users": len(top_k.users)}
    sampled, valid = top_k.items[sample, :k], top_k.scores[sample, :k] > -np.inf
    if data.category_names:
        rates["category_match"] = match_rates(sampled, top_k.users[sample], histories, data.item_category, valid)
    authors = meta["author"].to_list() if "author" in meta.columns else []
    if any(authors):
        rates["author_match"] = match_rates(sampled, top_k.users[sample], histories, label_ids(authors), valid)
    return {"part": part, "rates": rates, "examples": examples}
