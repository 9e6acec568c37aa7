"""Splits as functions from standard interactions to labelled parts (0 = train, 1 = validation, 2 = test)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from booktower.config.data import SplitConfig
from booktower.data.errors import DataError

TRAIN, VALID, TEST = 0, 1, 2


def order_by_time(frame: pl.DataFrame) -> pl.DataFrame:
    """Each user's history in time order; ties broken by `order` (seq_pos or file order)."""
    return frame.sort(["user_id", "timestamp", "order"], maintain_order=True)


def held_out_ties(frame: pl.DataFrame) -> int:
    """Held-out rows (validation, test) stamped with the same time as the reader's previous row: which of them is
    held out follows `order` (seq_pos or file order), not time. Expects `frame` ordered by `order_by_time`, with
    its `part`."""
    previous = pl.col("timestamp").shift(1).over("user_id")
    return int(frame.select(((pl.col("part") != TRAIN) & (pl.col("timestamp") == previous)).sum()).item())


def leave_last_out(frame: pl.DataFrame) -> pl.Series:
    """Per user: last interaction = test, second-to-last = validation, the rest train.

    Users with two interactions give one to test; users with one keep it in train (nothing to hold out).
    Expects `frame` ordered by `order_by_time`.
    """
    from_end = frame.select(
        (pl.len().over("user_id") - pl.int_range(pl.len()).over("user_id") - 1).alias("from_end"),
        pl.len().over("user_id").alias("n"),
    )
    part = (
        pl.when((pl.col("from_end") == 0) & (pl.col("n") >= 2)).then(TEST)
        .when((pl.col("from_end") == 1) & (pl.col("n") >= 3)).then(VALID)
        .otherwise(TRAIN)
    )
    return from_end.select(part.cast(pl.Int8).alias("part")).to_series()


def _epoch(text: str, key: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"{key} {text!r} is not an ISO-8601 time", fix=f"write {key} like 2014-01-31") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def time_cutoff(frame: pl.DataFrame, valid_start: str, test_start: str) -> pl.Series:
    """Global cut: [valid_start, test_start) is validation, >= test_start is test."""
    valid_t, test_t = _epoch(valid_start, "split.valid_start"), _epoch(test_start, "split.test_start")
    part = pl.when(pl.col("timestamp") >= test_t).then(TEST).when(pl.col("timestamp") >= valid_t).then(VALID).otherwise(TRAIN)
    return frame.select(part.cast(pl.Int8).alias("part")).to_series()


def from_column(frame: pl.DataFrame, labels: dict[str, str]) -> pl.Series:
    """Parts read from the data's own split column (to reproduce published splits)."""
    code = {"train": TRAIN, "validation": VALID, "test": TEST}
    mapping = {raw.lower(): code[part] for raw, part in labels.items()}
    unknown = frame.filter(~pl.col("split_label").is_in(list(mapping)))["split_label"].unique().head(5).to_list()
    if unknown:
        raise DataError(f"the split column holds labels {unknown} that split.labels does not map",
                        column="split", fix=f"map them in data.split.labels (known: {sorted(mapping)})")
    return frame["split_label"].replace_strict(mapping, return_dtype=pl.Int8).rename("part")


def assign_parts(frame: pl.DataFrame, config: SplitConfig) -> pl.Series:
    if config.kind == "leave_last_out":
        return leave_last_out(frame)
    if config.kind == "time_cutoff":
        assert config.valid_start is not None and config.test_start is not None
        return time_cutoff(frame, config.valid_start, config.test_start)
    return from_column(frame, config.labels)
