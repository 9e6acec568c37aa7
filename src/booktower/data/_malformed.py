"""Where a table file polars refused goes wrong, in words a user can act on: the CSV line with a field too many or
an unclosed quote, the JSON-lines line that is not one JSON object."""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from pathlib import Path


def first_bad_csv_row(path: Path, sep: str) -> str | None:
    """Where a CSV that polars refused goes wrong as Python's csv module reads it ("line 7 has ..."); None
    when it finds nothing (polars is stricter about a stray quote) or cannot read the file."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    start = 2  # the line the current row starts on
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.reader(handle, delimiter=sep, strict=True)
            header = next(reader, [])
            for row in reader:
                if len(row) > len(header):
                    return f"line {start} has {len(row)} fields, the header {len(header)}"
                start = reader.line_num + 1
    except csv.Error as exc:
        unclosed = ": a quote opened there is never closed" if "end of data" in str(exc) else ""
        return f"the row starting on line {start} is not valid CSV ({exc}{unclosed})"
    except (EOFError, OSError, zlib.error):  # a damaged file: its own error says so
        return None
    return None


def json_line_problem(number: int, line: bytes) -> str | None:
    """What is wrong with line `number` of a JSON-lines file ("line 7 is not JSON (...)"); None when it is a JSON
    object or blank."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as exc:  # the decoder's own "line 1 column 5" counts within this one line: not said
        detail = f"{exc.msg}, character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return f"line {number} is not JSON ({detail})"
    kind = type(record).__name__
    return None if isinstance(record, dict) else f"line {number} is not a JSON object (it is a {kind})"
