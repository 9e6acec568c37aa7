"""A log's values read as what they mean: timestamps as epoch seconds, numbers as floats.

Strictly (`parse_timestamps`, `parse_numeric`: an unreadable value is an error naming the rows), or leniently
(`read_timestamps`, `read_numbers` then `unreadable_rows`: under data.strict: false a few unreadable values are rows
to drop and count, but a column mostly unreadable is a wrong unit or mapping, and still an error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from booktower.data._isotime import iso_to_epoch_seconds
from booktower.data.errors import DataError, DropLedger
from booktower.data.readers import table_format

log = logging.getLogger(__name__)

_UNIT_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def row_numbers(frame: pl.DataFrame, mask: pl.Series) -> list[int]:
    # +2: one for the header line, one because people count rows from 1.
    return [int(i) + 2 for i in frame.with_row_index("_r").filter(mask)["_r"].head(5).to_list()]


def csv_lines(frame: pl.DataFrame, indices: list[int]) -> list[int]:
    """The lines of a CSV file (its header is line 1) where the rows at `indices` (from 0, in file order) start:
    one line a row, except that a quoted field holding line breaks spans more than one."""
    if not indices:
        return []
    head = frame.head(max(indices) + 1)
    texts = [name for name, dtype in head.schema.items() if dtype == pl.String]
    if not texts:
        return [i + 2 for i in indices]
    breaks = head.select(pl.sum_horizontal(pl.col(texts).str.count_matches("\n").fill_null(0))).to_series()
    before = (breaks.cum_sum() - breaks).to_list()
    return [i + 2 + int(before[i]) for i in indices]


def where_in_file(frame: pl.DataFrame, mask: pl.Series, path: Path) -> tuple[str, list[int]]:
    """Where the first rows of `mask` are in the file `frame` was read from, in words ("on lines 3 and 7 of the
    file (the header is line 1)": what an editor shows for a CSV) and as those numbers."""
    indices = [int(i) for i in frame.with_row_index("_r").filter(mask)["_r"].head(5).to_list()]
    more = ", ..." if int(mask.sum()) > len(indices) else ""
    if table_format(path) == "csv":
        lines = csv_lines(frame, indices)
        return f"on {_listed('line', lines, more)} of the file (the header is line 1)", lines
    unit = "record" if table_format(path) == "jsonl" else "row"
    numbers = [i + 1 for i in indices]
    return f"in {_listed(unit, numbers, more)} of the file (the first {unit} is 1)", numbers


def _listed(unit: str, numbers: list[int], more: str) -> str:
    """Numbers in words: "line 3", "lines 3 and 7", "lines 3, 7, 9, 10, 12, ..." (`more`: ", ...")."""
    if len(numbers) == 1 and not more:
        return f"{unit} {numbers[0]}"
    if more:
        return f"{unit}s {', '.join(map(str, numbers))}{more}"
    return f"{unit}s {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def parse_timestamps(frame: pl.DataFrame, column: str, unit: str, path: Path) -> pl.Series:
    """Epoch seconds; any value that is not a time in `unit` is an error (see `read_timestamps` for the lenient read)."""
    parsed = read_timestamps(frame, column, unit)
    if parsed.bad.any():
        raise parsed.error(frame, path, column)
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

    def error(self, frame: pl.DataFrame, path: Path, column: str, why: str = "") -> DataError:
        examples = self.raw.filter(self.bad).unique(maintain_order=True).head(3).to_list()  # distinct: more to go on
        shown = repr(examples[0]) if int(self.bad.sum()) == 1 else f"e.g. {examples}"
        where, numbers = where_in_file(frame, self.bad, path)
        error = DataError(f"{self.counted()} ({shown}) {where}{why}", path=path, column=column, fix=self.fix)
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


def unreadable_rows(parsed: Parsed, frame: pl.DataFrame, path: Path, column: str, ledger: DropLedger,
             outcome: str = "those rows are dropped and counted") -> pl.Series:
    """The rows whose value could not be read, to be dropped and counted; an error instead under data.strict,
    or when most values are unreadable (a config mistake, not bad rows)."""
    if not parsed.bad.any():
        return parsed.bad
    share = parsed.share()
    if share > _MOSTLY_UNREADABLE:
        raise parsed.error(frame, path, column, why=f": {share:.0%} of its non-empty values, so the unit, format or "
                           "column mapping is wrong rather than a few rows (data.strict: false drops stray rows only)")
    if ledger.strict:
        parsed.fix += f" (data.strict is on: with data.strict: false {outcome})"
        raise parsed.error(frame, path, column)
    examples = parsed.raw.filter(parsed.bad).unique(maintain_order=True).head(3).to_list()
    log.warning("%s, column %r: %s (e.g. %s): %s (data.strict is off)",
                path, column, parsed.counted(), examples, outcome)
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


def parse_numeric(frame: pl.DataFrame, column: str, path: Path, key: str) -> pl.Series:
    """Floats; any value that is not a number is an error (see `read_numbers` for the lenient read)."""
    parsed = read_numbers(frame, column, key)
    if parsed.bad.any():
        raise parsed.error(frame, path, column)
    return parsed.values


def read_numbers(frame: pl.DataFrame, column: str, key: str) -> Parsed:
    raw = frame[column].cast(pl.String).str.strip_chars()
    cleaned = raw.str.replace_all(r"^\$", "").replace({"": None, "None": None, "nan": None, "NaN": None, "null": None})
    values = cleaned.cast(pl.Float64, strict=False)
    bad = values.is_null() & cleaned.is_not_null()
    return Parsed(values, raw, bad, cleaned.len() - cleaned.null_count(),
                  ("value is not a number", "values are not numbers"),
                  f"clean the column, or remove it from {key} if it is not numeric")
