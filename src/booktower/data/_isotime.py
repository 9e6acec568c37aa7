"""ISO-8601 text to epoch seconds and the nanoseconds past them, value by value.

polars' `str.to_datetime` infers one format from the first values and turns every value written another way into
null, so one column mixing `2020-01-25T08:00:00`, `...Z` and `...+02:00` (an export that appended rows from several
tools) would read as unparseable. Here each value's own parts decide: naive times are UTC, offsets are converted.
"""

from __future__ import annotations

import polars as pl

# date, then optionally [T or space] HH:MM[:SS][.fraction], then optionally Z or +HH[:MM] / -HHMM.
_ISO = (r"^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2}))?(?:[.,](\d+))?)?"
        r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$")
_FIELDS = ["date", "hour", "minute", "second", "fraction", "zulu", "sign", "off_hour", "off_minute"]


def iso_to_epoch(raw: pl.Series) -> pl.DataFrame:
    """`seconds`: epoch seconds (Int64) of ISO-8601 text; `subsecond`: the nanoseconds past them that its fraction
    gives (digits past the ninth are cut). Both null where a value is not ISO-8601 or names an impossible date or
    time (2020-02-30, 25:00). The fraction is kept apart so that times compare by the second where cut-offs and
    dates are concerned, yet two reads within one second still keep their order."""
    parts = raw.str.extract_groups(_ISO).struct.rename_fields(_FIELDS).struct.unnest()
    number = lambda name: pl.col(name).cast(pl.Int64).fill_null(0)  # noqa: E731
    valid_clock = (number("hour") < 24) & (number("minute") < 60) & (number("second") < 60) & \
        (number("off_hour") < 24) & (number("off_minute") < 60)
    days = pl.col("date").str.to_date("%Y-%m-%d", strict=False).cast(pl.Int64)
    clock = number("hour") * 3600 + number("minute") * 60 + number("second")
    sign = pl.when(pl.col("sign") == "-").then(-1).otherwise(1)
    offset = sign * (number("off_hour") * 3600 + number("off_minute") * 60)
    seconds = pl.when(valid_clock).then(days * 86_400 + clock - offset).cast(pl.Int64)
    nanos = pl.col("fraction").str.slice(0, 9).str.pad_end(9, "0").cast(pl.Int64).fill_null(0)
    return parts.select(seconds.alias("seconds"), pl.when(seconds.is_not_null()).then(nanos).alias("subsecond"))
