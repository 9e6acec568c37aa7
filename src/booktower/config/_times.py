"""Time cut-offs in configs: ISO dates or times, read once at load into timezone-aware datetimes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

EXAMPLE = "2018-06-01 (a date, midnight UTC) or 2018-06-01T12:00:00+02:00"
_ISO_SHAPED = re.compile(r"\d{4}-\d{1,2}-\d{1,2}([Tt ]|$)")


def parse_cutoff(value: Any, key: str) -> datetime | None:
    """`value` as a timezone-aware datetime; a time without an offset is UTC.

    YAML turns an unquoted `2018-06-01` into a date and `2018-06-01T00:00:00Z` into a datetime, while a quoted
    one stays text: all three mean the same cut-off. Epoch numbers are refused, because their unit (s or ms)
    would be a guess.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(_not_a_time(value, key, exc)) from None
    else:
        raise ValueError(f"{key} must be an ISO-8601 date or time like {EXAMPLE}, got {type(value).__name__} "
                         f"{value!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _not_a_time(value: str, key: str, exc: ValueError) -> str:
    """An ISO-shaped value that names no real day (`2018-02-30`) is told why, as it looks right at a glance."""
    if _ISO_SHAPED.match(value.strip()) and "isoformat" not in str(exc):
        return (f"{key} {value!r} is not a real date or time ({exc}); write an existing one in ISO-8601, like "
                f"{EXAMPLE}")
    return f"{key} {value!r} is not an ISO-8601 date or time; write it like {EXAMPLE}"


def describe(moment: datetime) -> str:
    """`moment` as written plus in UTC, so cut-offs with different offsets can be compared by eye."""
    utc = moment.astimezone(UTC)
    return moment.isoformat() if moment.utcoffset() == utc.utcoffset() else f"{moment.isoformat()} = {utc.isoformat()}"
