"""Splits as functions from standard interactions to labelled parts (0 = train, 1 = validation, 2 = test)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from booktower.config.data import SplitConfig
from booktower.data.errors import DataError
from booktower.utils.wording import counted

TRAIN, VALID, TEST = 0, 1, 2


def time_key(frame: pl.DataFrame) -> list[str]:
    """The columns that order reads in time, to the full precision the log gave: the second, then the nanoseconds
    past it (`subsecond`, when the log had them), so reads 100 ms apart keep their order. Cut-offs, dates and the
    prepared arrays use the seconds alone."""
    return ["timestamp", "subsecond"] if "subsecond" in frame.columns else ["timestamp"]


def order_by_time(frame: pl.DataFrame, user: str = "user_id") -> pl.DataFrame:
    """Each user's history in time order (`time_key`); true ties broken by `order` (seq_pos or file order)."""
    return frame.sort([user, *time_key(frame), "order"], maintain_order=True)


def held_out_ties(frame: pl.DataFrame) -> int:
    """Held-out rows (validation, test) stamped with the same time as the reader's previous row, to the full
    precision of the log: which of them is held out follows `order` (seq_pos or file order), not time. Expects
    `frame` ordered by `order_by_time`, with its `part`."""
    same = pl.all_horizontal(pl.col(c) == pl.col(c).shift(1).over("user_id") for c in time_key(frame))
    return int(frame.select(((pl.col("part") != TRAIN) & same).sum()).item())


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


def time_cutoff(frame: pl.DataFrame, valid_start: datetime, test_start: datetime) -> pl.Series:
    """Global cut: [valid_start, test_start) is validation, >= test_start is test. The config made both
    timezone-aware (`SplitConfig`), so they compare with the epoch-second timestamps directly."""
    valid_t, test_t = int(valid_start.timestamp()), int(test_start.timestamp())
    part = pl.when(pl.col("timestamp") >= test_t).then(TEST).when(pl.col("timestamp") >= valid_t).then(VALID).otherwise(TRAIN)
    return frame.select(part.cast(pl.Int8).alias("part")).to_series()


def from_column(frame: pl.DataFrame, labels: dict[str, str], column: str = "split") -> pl.Series:
    """Parts read from the data's own split column (to reproduce published splits). `column`: the file's name
    for it (`data.columns.split`), for the errors. Ingest drops and counts rows without a label
    (`missing_split_label`); one that still arrives here would become a part of nothing, so it is an error."""
    code = {"train": TRAIN, "validation": VALID, "test": TEST}
    mapping = {raw.lower(): code[part] for raw, part in labels.items()}
    empty = frame.select((pl.col("split_label").is_null() | (pl.col("split_label") == "")).sum()).item()
    if empty:
        raise DataError(f"{empty:,} rows have no split label", column=column,
                        fix="label each row train, validation or test (as data.split.labels maps them), or remove "
                            "those rows")
    unknown = frame.filter(~pl.col("split_label").is_in(list(mapping)))["split_label"].unique().head(5).to_list()
    if unknown:
        raise DataError(f"the split column holds labels {unknown} that split.labels does not map",
                        column=column, fix=f"map them in data.split.labels (known: {sorted(mapping)})")
    return frame["split_label"].replace_strict(mapping, return_dtype=pl.Int8).rename("part")


def assign_parts(frame: pl.DataFrame, config: SplitConfig, column: str | None = None) -> pl.Series:
    """`column`: the file's split column (`data.columns.split`), named in the errors of a `column` split."""
    if config.kind == "leave_last_out":
        return leave_last_out(frame)
    if config.kind == "time_cutoff":
        assert config.valid_start is not None and config.test_start is not None
        return time_cutoff(frame, config.valid_start, config.test_start)
    return from_column(frame, config.labels, column or "split")


_PART_NAMES = {TRAIN: "training", VALID: "validation", TEST: "test"}


def require_every_part(frame: pl.DataFrame, config: SplitConfig) -> None:
    """An empty part is an error here, not a training run that early-stops on metrics of nothing.
    Expects `frame` with its `part` and epoch-second `timestamp`."""
    counts = dict(frame.group_by("part").len().iter_rows())
    empty = [part for part in (TRAIN, VALID, TEST) if not counts.get(part)]
    if not empty:
        return
    sizes = ", ".join(f"{_PART_NAMES[p]} {counts.get(p, 0):,}" for p in (TRAIN, VALID, TEST))
    problem = f"the {config.kind} split leaves the {_PART_NAMES[empty[0]]} set empty ({sizes} interactions)"
    raise DataError(problem, fix=_empty_part_fix(frame, config))


FEW_READERS = 50
"""Under this many readers a held-out part's metrics are noise: one hit more or less moves HR@k by 2 points or
more, and a single reader's hit reads as HR 1.0."""


def small_part_warnings(frame: pl.DataFrame, config: SplitConfig, source: str) -> list[str]:
    """A warning for validation or test when it holds under `FEW_READERS` readers and under a quarter of the log's:
    the split, not the log, made it small (a log of 20 readers shows its size in n_users, and a leave-last-out of
    it holds out every reader). Expects `frame` with its `part`, after pruning; `source` names the log."""
    n_readers = frame["user_id"].n_unique()
    messages = []
    for part in (VALID, TEST):
        held = frame.filter(pl.col("part") == part)
        readers = held["user_id"].n_unique()
        if readers >= FEW_READERS or 4 * readers >= n_readers:
            continue
        messages.append(
            f"{source}: the {config.kind} split leaves {counted(held.height, 'interaction')} of "
            f"{counted(readers, 'reader')} in the {_PART_NAMES[part]} set, of the log's {n_readers:,} readers after "
            f"pruning: metrics averaged over so few readers are noise (each reader moves HR@k by {1 / readers:.2g}). "
            f"Fix: {_small_part_fix(frame, config, part)}")
    return messages


def _small_part_fix(frame: pl.DataFrame, config: SplitConfig, part: int) -> str:
    if config.kind == "time_cutoff":
        suggestion = suggest_cutoffs(frame["timestamp"].to_numpy())
        key = "valid_start" if part == VALID else "test_start"
        example = (f", e.g. data.split.valid_start={suggestion[0]} and data.split.test_start={suggestion[1]} hold "
                   "out about the last 20% and 10% of interactions") if suggestion else ""
        return f"move data.split.{key} earlier{example}"
    if config.kind == "column":
        return (f"label more rows {_PART_NAMES[part]} in the data.columns.split column, or use data.split.kind: "
                "leave_last_out (one read of every reader held out)")
    return ("most readers have too few reads to hold one out (2 for a test book, 3 for a validation one): raise "
            "data.min_user_interactions to 3, so every reader kept has both")


def _empty_part_fix(frame: pl.DataFrame, config: SplitConfig) -> str:
    if config.kind == "time_cutoff":
        return _cutoff_fix(frame["timestamp"].to_numpy(), config)
    if config.kind == "column":
        return (f"label some rows of the data.columns.split column as each part, or map its labels in "
                f"data.split.labels (now {config.labels})")
    return ("leave_last_out holds out a reader's last interaction for test and the one before for validation, so "
            "readers need 3 or more: raise data.min_user_interactions to at least 3")


def _stamp(seconds: float, fine: bool) -> str:
    """A cut-off as the config reads it: a date, or (`fine`) a UTC time to the second, without an offset."""
    moment = datetime.fromtimestamp(int(seconds), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") if fine else moment.date().isoformat()


def _three_parts(seconds: np.ndarray, valid_start: str, test_start: str) -> bool:
    valid_t, test_t = (datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for t in (valid_start, test_start))
    return bool((seconds < valid_t).any() and ((seconds >= valid_t) & (seconds < test_t)).any()
                and (seconds >= test_t).any())


def suggest_cutoffs(seconds: np.ndarray) -> tuple[str, str, bool] | None:
    """(valid_start, test_start, fine) holding out about the last 20% and 10% of events. Whole days read best, but
    on a log of a day or two they coincide or leave a part empty: then exact times. Failing the quantiles, the
    cut falls at the distinct event times nearest them, so that every part keeps a row. None under three
    distinct times, or when the times lie beyond what a cut-off can name (`_datable`)."""
    times = np.unique(seconds)  # sorted
    if len(times) < 3 or not _datable(times):
        return None
    valid_q, test_q = np.quantile(seconds, [0.8, 0.9])
    i = int(np.clip(np.searchsorted(times, valid_q), 1, len(times) - 2))
    j = int(np.clip(np.searchsorted(times, test_q), i + 1, len(times) - 1))
    for (valid_t, test_t), fine in (((valid_q, test_q), False), ((times[i], times[j]), False),
                                    ((times[i], times[j]), True)):
        valid_start, test_start = _stamp(valid_t, fine), _stamp(test_t, fine)
        if _three_parts(seconds, valid_start, test_start):
            return valid_start, test_start, fine
    raise AssertionError("unreachable: times[i] < times[j] at exact times always leaves three parts")


_DATETIME_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01 .. 9999-12-31T23:59:59 UTC


def _datable(seconds: np.ndarray) -> bool:
    """Whether every time has a date a cut-off could name: epoch ms read as seconds lie near year 49,000."""
    low, high = _DATETIME_SECONDS
    return bool(seconds.min() >= low and seconds.max() <= high)


def _cutoff_fix(seconds: np.ndarray, config: SplitConfig) -> str:
    """Names the cut-offs, the data's time range and cut-offs inside it (the last ~20% and ~10% of events)."""
    assert config.valid_start is not None and config.test_start is not None
    given = (f"data.split.valid_start is {config.valid_start.isoformat()} and data.split.test_start is "
             f"{config.test_start.isoformat()}, but the interactions (after pruning)")
    if not _datable(seconds):
        latest = int(1970 + seconds.max() // 31_556_952)
        return (f"{given} reach the year {latest:,}, past any date a cut-off can name: the timestamps are read in "
                "the wrong unit (epoch ms read as s land near the year 49,000); set data.columns.timestamp_unit to "
                "the log's unit")
    suggestion = suggest_cutoffs(seconds)
    if suggestion is None:
        return (f"{given} fall at {len(np.unique(seconds))} distinct times, too few to cut into three parts: use "
                "data.split.kind: leave_last_out, or a log with more distinct times")
    valid_start, test_start, fine = suggestion
    return (f"{given} run from {_stamp(seconds.min(), fine)} to {_stamp(seconds.max(), fine)}: move the cut-offs "
            f"inside that range, e.g. data.split.valid_start={valid_start} and data.split.test_start={test_start} "
            "hold out about the last 20% and 10% of interactions")
