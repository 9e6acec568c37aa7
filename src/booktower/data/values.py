"""A log's values read as what they mean: timestamps as epoch seconds, numbers as floats.

Strictly (`parse_timestamps`, `parse_numeric`: an unreadable value is an error naming the rows), or leniently
(`read_timestamps`, `read_numbers` then `unreadable_rows`: under data.strict: false a few unreadable values are rows
to drop and count, but a column mostly unreadable is a wrong unit or mapping, and still an error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from booktower.data._isotime import iso_to_epoch
from booktower.data.errors import DataError, DropLedger
from booktower.data.locations import TableFile
from booktower.utils.wording import counted

log = logging.getLogger(__name__)

_UNIT_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def parse_timestamps(table: TableFile, column: str, unit: str) -> pl.Series:
    """Epoch seconds; any value that is not a time in `unit` is an error (see `read_timestamps` for the lenient read)."""
    parsed = read_timestamps(table.frame, column, unit)
    if parsed.bad.any():
        raise parsed.error(table, column)
    return parsed.values


@dataclass
class Parsed:
    """One column read as numbers: `values` (null where empty or unreadable), `bad` (non-empty values that could not
    be read, which are null in `values`), and how to describe them."""

    values: pl.Series
    raw: pl.Series
    bad: pl.Series
    filled: int
    """How many values are not empty (the rest are missing, not unreadable)."""
    what: tuple[str, str]
    """What is wrong with one unreadable value, and with several: ("value is not a number", "values are ...")."""
    fix: str
    subsecond: pl.Series | None = None
    """Timestamps only: the nanoseconds past each value's second (null where `values` is), to order reads
    within one second."""

    def share(self) -> float:
        """The unreadable values' share of the non-empty ones."""
        return int(self.bad.sum()) / self.filled if self.filled else 0.0

    def counted(self) -> str:
        """The unreadable values counted, in agreement: "1 value is not a number", "3 values are not numbers"."""
        count = int(self.bad.sum())
        return f"{count:,} {self.what[0] if count == 1 else self.what[1]}"

    def error(self, table: TableFile, column: str, why: str = "") -> DataError:
        examples = self.raw.filter(self.bad).unique(maintain_order=True).head(3).to_list()  # distinct: more to go on
        shown = repr(examples[0]) if int(self.bad.sum()) == 1 else f"e.g. {examples}"
        where, numbers = table.where_mask(self.bad)
        error = DataError(f"{self.counted()} ({shown}) {where}{why}", path=table.path, column=column, fix=self.fix)
        error.rows = numbers  # said in the message, in the file's own terms: not as DataError's "rows N"
        return error


def read_timestamps(frame: pl.DataFrame, column: str, unit: str) -> Parsed:
    """Epoch seconds in `values` and, in `subsecond`, the nanoseconds past them (the order of reads within one
    second). A value that is no time in `unit` (text, `nan`, `inf`, or beyond 64-bit seconds) is `bad`."""
    column_data = frame[column]
    as_what = f"could not be parsed as {'ISO-8601 text' if unit == 'iso' else 'epoch ' + unit}"
    what = (f"timestamp {as_what}", f"timestamps {as_what}")
    fix = "fix those values, or set data.columns.timestamp_unit to the right unit (s, ms, us, ns, iso)"
    if unit != "iso" and column_data.dtype.is_numeric():  # Parquet / JSON: already numbers, nothing to parse
        whole = column_data.cast(pl.Int64, strict=False) if column_data.dtype.is_integer() else None
        times = _from_integers(whole, unit) if whole is not None and whole.null_count() == column_data.null_count() \
            else _from_floats(column_data.cast(pl.Float64), unit)
        filled = column_data.is_not_null()
        bad = times["seconds"].is_null() & filled
        return Parsed(times["seconds"].rename(column), column_data, bad, int(filled.sum()), what, fix,
                      times["subsecond"])
    raw = column_data.cast(pl.String).str.strip_chars()
    if unit == "iso":
        times = iso_to_epoch(raw)  # each value's own format: one column may mix Z, offsets and naive
    else:
        # Integer text is the common case and parses ~5x faster than floats; only the rest go through Float64.
        times = _from_integers(raw.cast(pl.Int64, strict=False), unit)
        if times["seconds"].null_count() > raw.null_count():
            fractional = _from_floats(raw.cast(pl.Float64, strict=False), unit)
            times = times.with_columns(pl.col(c).fill_null(fractional[c]) for c in ("seconds", "subsecond"))
    filled = raw.is_not_null() & (raw != "")
    return Parsed(times["seconds"].rename(column), raw, times["seconds"].is_null() & filled, int(filled.sum()), what,
                  fix, times["subsecond"])


def _from_integers(whole: pl.Series, unit: str) -> pl.DataFrame:
    """Whole numbers in `unit` as epoch seconds and the nanoseconds past them, exactly."""
    div = _UNIT_DIVISOR[unit]
    return pl.DataFrame({"seconds": whole // div, "subsecond": (whole % div) * (1_000_000_000 // div)})


_LARGEST_SECONDS = 9.2e18
"""Just under 2**63: a time that far out cannot be held as 64-bit seconds, so it reads as no time at all."""


def _from_floats(number: pl.Series, unit: str) -> pl.DataFrame:
    """Numbers in `unit` (`1.5e12`, `1500000000.25`) as epoch seconds and nanoseconds past them; null for `nan`,
    `inf` and values beyond 64-bit seconds, which are unreadable rather than a crash in the cast."""
    div = _UNIT_DIVISOR[unit]
    x = pl.col("x")
    usable = x.is_finite() & (x.abs() / div < _LARGEST_SECONDS)
    seconds = (x / div).floor()
    nanos = ((x - seconds * div) * (1e9 / div)).round().clip(0, 999_999_999)
    return pl.DataFrame({"x": number}).select(seconds=pl.when(usable).then(seconds).cast(pl.Int64),
                                              subsecond=pl.when(usable).then(nanos).cast(pl.Int64))


_MOSTLY_UNREADABLE = 0.5
"""Above this share of unreadable values a column is read with the wrong unit, format or mapping: an error even
under data.strict: false, which drops a few bad rows, not a misconfigured column."""


def unreadable_rows(parsed: Parsed, table: TableFile, column: str, ledger: DropLedger,
                    outcome: str = "those rows are dropped and counted", warnings: list[str] | None = None
                    ) -> pl.Series:
    """The rows whose value could not be read, to be dropped and counted; an error instead under data.strict,
    or when most values are unreadable (a config mistake, not bad rows). The warning that says so is logged and
    added to `warnings` (data_summary.json's)."""
    if not parsed.bad.any():
        return parsed.bad
    share = parsed.share()
    if share > _MOSTLY_UNREADABLE:
        raise parsed.error(table, column, why=f": {share:.0%} of its non-empty values, so the unit, format or "
                           "column mapping is wrong rather than a few rows (data.strict: false drops stray rows only)")
    if ledger.strict:
        parsed.fix += f" (data.strict is on: with data.strict: false {outcome})"
        raise parsed.error(table, column)
    examples = parsed.raw.filter(parsed.bad).unique(maintain_order=True).head(3).to_list()
    message = (f"{table.path}, column {column!r}: {parsed.counted()} (e.g. {examples}) "
               f"{table.where_mask(parsed.bad, named=True)[0]}: {outcome} (data.strict is off)")
    log.warning(message)
    if warnings is not None:
        warnings.append(message)
    return parsed.bad


_PLAUSIBLE_SECONDS = (315_532_800, 4_102_444_800)  # 1980-01-01 .. 2100-01-01: when reading logs are from


def timestamp_unit_warning(seconds: pl.Series, unit: str) -> str | None:
    """A warning when the timestamps, read in `unit`, fall outside 1980-2100 (as epoch ms read as s do), naming
    the unit that would put them there. Splits compare times within a reader, so they survive a wrong unit; but
    dates in reports, time cut-offs and recency features do not."""
    if unit == "iso" or seconds.len() == 0:
        return None
    median = float(seconds.median())
    low, high = _PLAUSIBLE_SECONDS
    if low <= median <= high:
        return None
    fits = [u for u, div in _UNIT_DIVISOR.items() if low <= median * _UNIT_DIVISOR[unit] / div <= high]
    hint = f"; they look like epoch {fits[0]}" if fits else ""
    return (f"the timestamps read as epoch {unit} have their median at {median:,.0f} s after 1970, outside "
            f"1980-2100{hint}: check data.columns.timestamp_unit")


def implausible_rows(seconds: pl.Series) -> pl.Series | None:
    """True for the times outside 1980-2100 in a log whose median time is inside: a few rows in another unit
    (epoch ms among seconds) or a placeholder (0, 1900-01-01), which at face value become a reader's latest or
    earliest read. None when the median itself is outside: then the column's unit is in doubt, which
    `timestamp_unit_warning` says, rather than most of the log being dropped."""
    known = seconds.drop_nulls()
    low, high = _PLAUSIBLE_SECONDS
    if known.len() == 0 or not low <= float(known.median()) <= high:
        return None
    return ((seconds < low) | (seconds >= high)).fill_null(False)


_YEAR_SECONDS = 31_556_952  # a Gregorian year's mean length: years in messages, past where datetime reaches


def implausible_cause(seconds: pl.Series, unit: str) -> str:
    """What times outside 1980-2100 in a plausible log most likely are, judged from the values: the rows of
    another unit (the units that would put them inside), or placeholders near 1970-01-01 (0)."""
    low, high = _PLAUSIBLE_SECONDS
    causes = []
    if unit != "iso":
        for other, div in _UNIT_DIVISOR.items():
            scaled = seconds.cast(pl.Float64) * _UNIT_DIVISOR[unit] / div
            fit = int(((scaled >= low) & (scaled < high)).sum())
            if other != unit and fit:
                causes.append(f"{counted(fit, 'value')} {'fits' if fit == 1 else 'fit'} 1980-2100 as epoch {other}, "
                              f"so those rows were likely written in another unit than data.columns.timestamp_unit "
                              f"({unit})")
    near_zero = int((seconds.abs() < _YEAR_SECONDS).sum())
    if near_zero:
        causes.append(f"{counted(near_zero, 'value')} within a year of 1970-01-01, the time 0 stands for: a "
                      "placeholder for an unknown time")
    return "; ".join(causes) or "neither another unit nor 0 explains them: placeholders (1900-01-01, 9999-12-31) " \
                                "or typos"


def implausible_years(seconds: pl.Series) -> list[str]:
    """The first few times as years ("49,503"): datetime stops at year 9999, these go beyond."""
    years = [int(1970 + s // _YEAR_SECONDS) for s in seconds.head(3).to_list()]
    return [f"{year:,}" if year > 9999 else str(year) for year in years]


def parse_numeric(table: TableFile, column: str, key: str) -> pl.Series:
    """Floats; any value that is not a number is an error (see `read_numbers` for the lenient read)."""
    parsed = read_numbers(table.frame, column, key)
    if parsed.bad.any():
        raise parsed.error(table, column)
    return parsed.values


PLACEHOLDERS = ("null", "none", "nan", "na", "n/a", "#n/a", "nil", "undefined")
"""What exports write where a value is unknown, compared without case: a number's is missing, like an empty one;
an id's is no id (`ingest` drops its row, lest every such row become one reader or book)."""


def read_numbers(frame: pl.DataFrame, column: str, key: str) -> Parsed:
    raw = frame[column].cast(pl.String).str.strip_chars()
    cleaned = raw.str.replace_all(r"^\$", "")
    unknown = (cleaned == "") | cleaned.str.to_lowercase().is_in(PLACEHOLDERS)
    cleaned = pl.select(pl.when(unknown).then(None).otherwise(cleaned)).to_series()
    values = cleaned.cast(pl.Float64, strict=False)
    values = pl.select(pl.when(values.is_finite()).then(values)).to_series()  # "inf" parses, but is no measurement
    bad = values.is_null() & cleaned.is_not_null()
    return Parsed(values, raw, bad, cleaned.len() - cleaned.null_count(),
                  ("value is not a number", "values are not numbers"),
                  f"clean the column, or remove it from {key} if it is not numeric")
