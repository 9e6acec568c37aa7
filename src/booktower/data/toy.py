"""Tiny datasets with a known answer, built through the real pipeline (for contract tests and examples)."""

from __future__ import annotations


import numpy as np
import polars as pl

from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.ingest import RawData
from booktower.data.prepare import prepare_from_raw
from booktower.data.types import PreparedData


def checkerboard_raw(n: int = 50) -> RawData:
    """n readers, n books. Reader u reads every book of its parity; its last book is book u (the test item)
    and its second-to-last book is (u + 2) % n (validation). Categories are the parity ("even"/"odd").

    After masking what the reader has seen, book u is the only unseen book of the right parity, so a model that
    learned the structure ranks it first.
    """
    if n % 2 or n < 6:
        raise ValueError("checkerboard needs an even n >= 6")
    rows = []
    for user in range(n):
        same = [item for item in range(n) if (item - user) % 2 == 0]
        valid_item, test_item = (user + 2) % n, user
        train = [item for item in same if item not in (valid_item, test_item)]
        for t, item in enumerate([*train, valid_item, test_item]):
            rows.append((f"u{user}", f"b{item}", 1_600_000_000 + 86_400 * t))
    interactions = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}, orient="row")
    interactions = interactions.with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))
    catalogue = pl.DataFrame({
        "item_id": [f"b{i}" for i in range(n)],
        "title": [f"{'even' if i % 2 == 0 else 'odd'} book number {i}" for i in range(n)],
        "author": [f"author {i % 4}" for i in range(n)],
        "categories": [["Books", "even" if i % 2 == 0 else "odd"] for i in range(n)],
        "num:price": [float(5 + i % 7) for i in range(n)],
    })
    return RawData(interactions, catalogue, None, [])


def checkerboard(n: int = 50, config: DataConfig | None = None) -> PreparedData:
    config = config or DataConfig.model_validate({
        "min_user_interactions": 1, "min_item_interactions": 1,
        "columns": {"item_numeric": ["price"], "item_count_columns": [], "item_nonnegative": ["price"]},
    })
    return prepare_from_raw(checkerboard_raw(n), config, DropLedger())


def random_prepared(n_users: int = 200, n_items: int = 100, per_user: int = 12, seed: int = 0,
                    reader_metadata: bool = False) -> PreparedData:
    """Random interactions with categories and titles: for shape and plumbing tests, not for quality.
    `reader_metadata`: readers also get an age (numeric) and an occupation (categorical)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for t, item in enumerate(items):
            rows.append((f"u{user}", f"b{item}", 1_600_000_000 + 3600 * t))
    interactions = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}, orient="row")
    interactions = interactions.with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))
    genres = ["fantasy", "history", "science", "poetry"]
    catalogue = pl.DataFrame({
        "item_id": [f"b{i}" for i in range(n_items)],
        "title": [f"the {genres[i % 4]} of thing {i}" for i in range(n_items)],
        "author": [f"writer {i % 9}" for i in range(n_items)],
        "categories": [["Books", genres[i % 4], f"{genres[i % 4]}-{i % 3}"] for i in range(n_items)],
        "num:price": [float(rng.uniform(1, 30)) for _ in range(n_items)],
    })
    columns: dict = {"item_numeric": ["price"], "item_count_columns": [], "item_nonnegative": ["price"]}
    users = None
    if reader_metadata:
        occupations = ["student", "librarian", "retired"]
        users = pl.DataFrame({
            "user_id": [f"u{u}" for u in range(n_users)],
            "num:age": [float(a) for a in rng.integers(16, 80, size=n_users)],
            "cat:occupation": [occupations[u % 3] for u in range(n_users)],
        })
        columns |= {"user_numeric": ["age"], "user_categorical": ["occupation"]}
    config = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1, "columns": columns})
    return prepare_from_raw(RawData(interactions, catalogue, users, []), config, DropLedger())
