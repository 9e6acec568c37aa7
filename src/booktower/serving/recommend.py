"""Recommendations from a bundle as plain rows (for the command line and scripts)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from booktower.serving.service import Recommender


@lru_cache(maxsize=4)
def _recommender(bundle_dir: str) -> Recommender:
    return Recommender.from_bundle(Path(bundle_dir))


def recommend_from_bundle(bundle_dir: Path | str, user: str | None = None, history: list[str] | None = None,
                          k: int = 10) -> list[dict[str, Any]]:
    """Top-k rows (rank, item_id, title, author, categories, score) for a known `user` or an anonymous `history`.

    Exactly one of `user` / `history` is given. Unknown ids raise `UnknownIdError` naming them; a tampered bundle
    raises `BundleError` naming the file.
    """
    if (user is None) == (not history):
        raise ValueError("give exactly one of user= or history=")
    recommender = _recommender(str(Path(bundle_dir).resolve()))
    rows = recommender.for_user(user, k) if user is not None else recommender.for_history(list(history or []), k)
    return [{"rank": rank, **row.as_dict()} for rank, row in enumerate(rows, start=1)]
