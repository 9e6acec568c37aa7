"""Iterative k-core pruning of low-activity readers and books."""

from __future__ import annotations

import polars as pl


def k_core(frame: pl.DataFrame, min_user: int, min_item: int, max_rounds: int = 100) -> tuple[pl.DataFrame, int]:
    """Repeatedly drop users with < min_user and items with < min_item interactions until both hold.

    Returns the pruned frame and the number of rounds it took. The result is a fixed point: pruning it again
    changes nothing.
    """
    rounds = 0
    while rounds < max_rounds:
        user_counts = frame.group_by("user_id").len()
        item_counts = frame.group_by("item_id").len()
        bad_users = user_counts.filter(pl.col("len") < min_user)["user_id"]
        bad_items = item_counts.filter(pl.col("len") < min_item)["item_id"]
        if bad_users.is_empty() and bad_items.is_empty():
            break
        frame = frame.filter(
            ~pl.col("user_id").is_in(bad_users.implode()) & ~pl.col("item_id").is_in(bad_items.implode())
        )
        rounds += 1
    return frame, rounds
