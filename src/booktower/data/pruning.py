"""Iterative k-core pruning of low-activity readers and books."""

from __future__ import annotations

import numpy as np
import polars as pl


def _dense_codes(column: pl.Series) -> tuple[np.ndarray, int]:
    """Raw ids -> dense int codes 0..k-1.

    Ranking 64-bit hashes is ~5x faster than a string join at 30M rows. A second, independently seeded hash
    guards it: every code must carry one value of it, else (a collision) the exact string join runs. Two
    different ids would have to collide on both 64-bit hashes to share a code (~1e-25 at 30M ids).
    """
    codes = (column.hash(seed=0).rank("dense").cast(pl.Int64) - 1).to_numpy()  # (n,)
    n_codes = int(codes.max()) + 1 if len(codes) else 0
    first = np.empty(n_codes, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the first row of each code
    check = column.hash(seed=0x5EED_B00C).to_numpy()
    if bool((check[first[codes]] == check).all()):
        return codes, n_codes
    uniques = column.unique()
    table = pl.DataFrame({column.name: uniques, "_code": pl.int_range(len(uniques), dtype=pl.Int64, eager=True)})
    exact = column.to_frame().join(table, on=column.name, how="left", maintain_order="left")["_code"]
    return exact.to_numpy(), len(uniques)


def k_core(frame: pl.DataFrame, min_user: int, min_item: int, max_rounds: int = 100) -> tuple[pl.DataFrame, int]:
    """Repeatedly drop users with < min_user and items with < min_item interactions until both hold.

    Each round removes, at once, every interaction of a user or item below its threshold (counted on what the
    previous round kept). Returns the pruned frame (row order kept) and the number of rounds it took. The
    result is a fixed point: pruning it again changes nothing.
    """
    if frame.height == 0 or (min_user <= 1 and min_item <= 1):
        return frame, 0
    users, n_users = _dense_codes(frame["user_id"])
    items, n_items = _dense_codes(frame["item_id"])
    kept = np.arange(frame.height)  # rows still in the core; the arrays shrink every round
    rounds = 0
    while rounds < max_rounds:
        user_counts = np.bincount(users, minlength=n_users)
        item_counts = np.bincount(items, minlength=n_items)
        good = (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        if good.all():
            break
        kept, users, items = kept[good], users[good], items[good]
        rounds += 1
    keep = np.zeros(frame.height, dtype=bool)
    keep[kept] = True
    return (frame if keep.all() else frame.filter(pl.Series(keep))), rounds
