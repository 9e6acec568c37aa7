"""Recommendations from a bundle as plain rows (for the command line and scripts)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from booktower.serving.live import LiveRecommender
from booktower.serving.service import Recommender

_CACHE_SIZE = 4
_cache: OrderedDict[str, LiveRecommender] = OrderedDict()
_cache_lock = threading.Lock()


def _recommender(bundle_dir: Path | str) -> Recommender:
    """The bundle's Recommender, loaded once per process and again whenever the bundle is rewritten (a stat of
    its manifest per call), so an `add_books` in this process is seen by the next call."""
    key = str(Path(bundle_dir).resolve())
    with _cache_lock:
        live = _cache.get(key)
        if live is None:
            live = LiveRecommender(key, check_every_s=0.0, background=False)
            _cache[key] = live
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        _cache.move_to_end(key)
        return live.current()


def recommend_from_bundle(bundle_dir: Path | str, user: str | None = None, history: list[str] | None = None,
                          k: int = 10, categories: list[str] | None = None,
                          max_per_author: int | None = None) -> list[dict[str, Any]]:
    """Top-k rows (rank, item_id, title, author, categories, score) for a known `user` or an anonymous `history`,
    among the books tagged with any of `categories` when given, at most `max_per_author` by one author.

    Exactly one of `user` / `history` (a list of item ids) is given; `k` is an int. Unknown ids raise
    `UnknownIdError` naming them; a tampered bundle raises `BundleError` naming the file; a wrong type
    (`k=2.5`, `history="B0X..."`) raises TypeError saying what to pass.
    """
    if isinstance(history, (str, bytes)):
        raise TypeError(f"history must be a list of item ids, not one string: write history=[{history!r}]")
    if (user is None) == (not history):
        raise ValueError("give exactly one of user= or history= (a non-empty list of item ids)")
    recommender = _recommender(bundle_dir)
    tags = list(categories or [])
    rows = (recommender.for_user(user, k, categories=tags, max_per_author=max_per_author) if user is not None
            else recommender.for_history(list(history or []), k, categories=tags, max_per_author=max_per_author))
    return [{"rank": rank, **row.as_dict()} for rank, row in enumerate(rows, start=1)]


def unknown_items(bundle_dir: Path | str, item_ids: list[str]) -> list[str]:
    """The ids the bundle does not hold, in the order given (a history leaves them out)."""
    return _recommender(bundle_dir).unknown_items(item_ids)


def unpooled_items(bundle_dir: Path | str, item_ids: list[str]) -> list[str]:
    """The ids the bundle holds but its model cannot pool into a history (books added by `index add` to a model
    without model.history.content), in the order given: they count in the history features only."""
    return _recommender(bundle_dir).unpooled_items(item_ids)
