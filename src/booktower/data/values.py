"""A log's values read as what they mean: timestamps as epoch seconds, numbers as floats.

Strictly (`parse_timestamps`, `parse_numeric`: an unreadable value is an error naming the rows), or leniently
(`read_timestamps`, `read_numbers` then `unreadable_rows`: under data.strict: false a few unreadable values are rows
to drop and count, but a column mostly unreadable is a wrong unit or mapping, and still an error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from booktower.data._isotime import iso_to_epoch_seconds
from booktower.data.errors import DataError, DropLedger
from booktower.data.locations import TableFile

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
    column_data = frame[column]
    as_what = f"could not be parsed as {'ISO-8601 text' if unit == 'iso' else 'epoch ' + unit}"
    what = (f"timestamp {as_what}", f"timestamps {as_what}")
    fix = "fix those values, or set data.columns.timestamp_unit to the right unit (s, ms, us, ns, iso)"
    if unit != "iso" and column_data.dtype.is_integer():  # Parquet / JSON: already numbers, nothing to parse
        values = (column_data.cast(pl.Int64) // _UNIT_DIVISOR[unit]).rename(column)
        none = pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)
        return Parsed(values, values, none, values.len() - values.null_count(), what, fix)
    raw = column_data.cast(pl.String).str.strip_chars()
    if unit == "iso":
        parsed = iso_to_epoch_seconds(raw)  # each value's own format: one column may mix Z, offsets and naive
    else:
        # Integer text is the common case and parses ~5x faster than floats; only the rest go through Float64.
        parsed = raw.cast(pl.Int64, strict=False) // _UNIT_DIVISOR[unit]
        if parsed.null_count() > raw.null_count():
            as_float = (raw.cast(pl.Float64, strict=False) / _UNIT_DIVISOR[unit]).floor().cast(pl.Int64)
            parsed = parsed.fill_null(as_float)
    filled = raw.is_not_null() & (raw != "")
    return Parsed(parsed, raw, parsed.is_null() & filled, int(filled.sum()), what, fix)


_MOSTLY_UNREADABLE = 0.5
"""Above this share of unreadable values a column is read with the wrong unit, format or mapping: an error even
under data.strict: false, which drops a few bad rows, not a misconfigured column."""


def unreadable_rows(parsed: Parsed, table: TableFile, column: str, ledger: DropLedger,
                    outcome: str = "those rows are dropped and counted") -> pl.Series:
    """The rows whose value could not be read, to be dropped and counted; an error instead under data.strict,
    or when most values are unreadable (a config mistake, not bad rows)."""
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
    log.warning("%s, column %r: %s (e.g. %s): %s (data.strict is off)",
                table.path, column, parsed.counted(), examples, outcome)
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


def parse_numeric(table: TableFile, column: str, key: str) -> pl.Series:
    """Floats; any value that is not a number is an error (see `read_numbers` for the lenient read)."""
    parsed = read_numbers(table.frame, column, key)
    if parsed.bad.any():
        raise parsed.error(table, column)
    return parsed.values


def read_numbers(frame: pl.DataFrame, column: str, key: str) -> Parsed:
    raw = frame[column].cast(pl.String).str.strip_chars()
    cleaned = raw.str.replace_all(r"^\$", "").replace({"": None, "None": None, "nan": None, "NaN": None, "null": None})
    values = cleaned.cast(pl.Float64, strict=False)
    bad = values.is_null() & cleaned.is_not_null()
    return Parsed(values, raw, bad, cleaned.len() - cleaned.null_count(),
                  ("value is not a number", "values are not numbers"),
                  f"clean the column, or remove it from {key} if it is not numeric")
