"""Reading one table from disk (CSV/CSV.gz/TSV, Parquet, JSON lines), turning reader failures into DataErrors."""

from __future__ import annotations

import difflib
import gzip
import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from booktower.data.errors import DataError

_CANDIDATE_SEPARATORS = (",", "\t", "|", ";")
# What reading a damaged file raises: gzip's EOFError / BadGzipFile / zlib.error, polars' OSError ("unexpected end
# of file"). The file exists and is not empty by then (`_check_exists`), so an OSError is about its bytes or access.
_UNREADABLE = (EOFError, OSError, zlib.error)


def _unreadable(path: Path, exc: BaseException) -> DataError:
    """The error for a file whose bytes cannot be read through: most often an interrupted download or copy."""
    return DataError(f"the file is truncated or corrupt, or cannot be read ({type(exc).__name__}: {exc})", path=path,
                     fix="download or export it again (`booktower data fetch` resumes its downloads); "
                         "`gzip -t FILE` checks a .gz file")


def table_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in ((".parquet", "parquet"), (".jsonl.gz", "jsonl"), (".jsonl", "jsonl"), (".json.gz", "jsonl")):
        if name.endswith(suffix):
            return fmt
    return "csv"


def _head_bytes(path: Path, n: int = 65536) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(n)
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from None


def sniff_separator(path: Path, encoding: str) -> str:
    head = _head_bytes(path)
    text = head.decode("latin-1" if encoding == "latin1" else "utf-8", errors="replace")
    header = text.splitlines()[0] if text.strip() else ""
    counts = {sep: header.count(sep) for sep in _CANDIDATE_SEPARATORS}
    best = max(counts, key=counts.get)  # type: ignore[arg-type]
    return best if counts[best] > 0 else ","


# What each configured file holds, for errors that must say which file was expected.
_EXPECTED = {
    "interactions": "the interaction log, one row per user-item event",
    "items": "the book catalogue, one row per book",
    "users": "the reader table, one row per reader",
}
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".parquet", ".jsonl", ".jsonl.gz", ".json.gz")
_NAME_HINTS = {  # how such files are usually named (users.csv is the Amazon format's interaction log)
    "interactions": ("inter", "rating", "review", "users", "log", "u.data"),
    "items": ("book", "item", "meta", "catalog"),
    "users": ("user", "reader"),
}


def _is_a_directory(path: Path, role: str, named_by: str | None) -> DataError:
    """Reading a folder fails deep in polars with an OSError that reads like a damaged file."""
    key = named_by or f"data.source.{role}"
    tables = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.lower().endswith(_TABLE_SUFFIXES))
    likely = [t for t in tables if any(h in t.lower() for h in _NAME_HINTS.get(role, ()))] or tables
    holds = f"; the folder holds {tables[:8]}" if tables else "; the folder holds no .csv/.parquet/.jsonl files"
    example = f", e.g. {path / likely[0]}" if len(likely) == 1 or likely is not tables else ""
    expected = _EXPECTED.get(role, f"the {role} table")
    return DataError(f"{key} is {path}, a directory, not a file{holds}",
                     fix=f"set {key} to the file itself ({expected}: .csv, .csv.gz, .tsv, .parquet or .jsonl)"
                         f"{example}")


def _give_rows(role: str, named_by: str | None) -> str:
    """The fix for an empty file, naming where its path came from (a config key, or a command's option)."""
    return f"give {named_by} a file with a header and at least one row" if named_by else \
        f"point the config at a file with a header and rows (data.source.{role})"


def _check_exists(path: Path, role: str, named_by: str | None = None) -> None:
    """`named_by`: the option that gave the path (default: the config key `data.source.<role>`)."""
    if path.is_dir():
        raise _is_a_directory(path, role, named_by)
    if not path.exists():
        where = f"relative paths resolve against {Path.cwd()}"
        raise DataError(
            f"the {role} file does not exist",
            path=path,
            fix=f"check {named_by} ({where})" if named_by else
            f"check data.source.{role} in the config ({where}), or run `booktower data synth` / "
            "`booktower data fetch` to create it",
        )
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"the {role} file is empty", path=path, fix=_give_rows(role, named_by))


def read_table(path: Path, role: str, *, separator: str | None = None, encoding: str = "utf8",
               named_by: str | None = None) -> pl.DataFrame:
    """Read a whole table with every column as text (typing happens in validation, where errors are named).
    `named_by`: the option that gave the path, for the errors of a missing or empty file (default
    `data.source.<role>`)."""
    _check_exists(path, role, named_by)
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            frame = pl.read_parquet(path)
        elif fmt == "jsonl":
            frame = pl.read_ndjson(path, infer_schema_length=10000)
        else:
            frame = _read_csv(path, role, separator, encoding, named_by)
    except (*_UNREADABLE, pl.exceptions.PolarsError) as exc:  # a CSV's own parse errors are DataErrors by now
        raise _unreadable(path, exc) from None
    if frame.height == 0:
        raise DataError(f"the {role} file has a header but no rows", path=path, fix=_give_rows(role, named_by))
    return frame


def _separator_key(role: str) -> str:
    """The config key that sets `role`'s separator (roles outside the config share data.source.separator's name)."""
    if role in _EXPECTED:
        return f"data.source.{role}_separator (or data.source.separator, for every file)"
    return "data.source.separator"


def _read_csv(path: Path, role: str, separator: str | None, encoding: str, named_by: str | None = None
              ) -> pl.DataFrame:
    sep = separator or sniff_separator(path, encoding)
    if encoding == "utf8":
        try:
            _head_bytes(path).decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the 64 KiB boundary is not an encoding error.
            if exc.start < 65536 - 4:
                raise DataError(
                    f"the {role} file is not valid UTF-8 (byte {exc.start} of the file)",
                    path=path,
                    fix="set data.source.encoding: latin1 (or re-save the file as UTF-8)",
                ) from None
    try:
        frame = pl.read_csv(
            path,
            separator=sep,
            infer_schema=False,  # all text: typed explicitly later with row-numbered errors
            encoding="utf8-lossy" if encoding == "utf8" else "utf8",
            quote_char='"',
            truncate_ragged_lines=False,
        ) if encoding == "utf8" else pl.read_csv(
            path.read_bytes().decode("latin-1").encode("utf-8"), separator=sep, infer_schema=False
        )
    except pl.exceptions.NoDataError:
        raise DataError(f"the {role} file is empty", path=path, fix=_give_rows(role, named_by)) from None
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError) as exc:
        raise DataError(
            f"the {role} file could not be parsed as CSV with separator {sep!r}: {str(exc).splitlines()[0]}",
            path=path,
            fix=f"check the separator ({_separator_key(role)}), quoting and that every row has the header's columns",
        ) from None
    if encoding == "utf8" and any(frame[c].str.contains("\ufffd").any() for c in frame.columns[:50]):
        raise DataError(
            f"the {role} file contains bytes that are not valid UTF-8",
            path=path,
            fix="set data.source.encoding: latin1 (or re-save the file as UTF-8)",
        )
    if frame.width == 1 and any(s in frame.columns[0] for s in _CANDIDATE_SEPARATORS if s != sep):
        raise DataError(
            f"the {role} file has a single column {frame.columns[0]!r}: the separator looks wrong",
            path=path,
            fix=f"set {_separator_key(role)} to the file's delimiter (e.g. '\\t' or '|')",
        )
    return frame


def ndjson_keys(path: Path, role: str, n_lines: int = 200) -> list[str]:
    """Field names seen in the first lines of a JSON-lines file (to validate a mapping before a full read)."""
    _check_exists(path, role)
    keys: dict[str, None] = {}
    for number, line in _first_lines(path, n_lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"line {number} is not JSON ({exc})", path=path,
                            fix="check the file is the .jsonl(.gz) download, one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"line {number} is not a JSON object", path=path,
                            fix="check the file is the .jsonl(.gz) download, one JSON object per line")
        keys.update(dict.fromkeys(record))
    if not keys:
        raise DataError(f"the {role} file has no JSON lines", path=path, fix="point the config at a non-empty file")
    return list(keys)


def _first_lines(path: Path, n_lines: int) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, line) of the first `n_lines` lines of a (gzipped) file."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            yield from zip(range(1, n_lines + 1), handle)
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from None


def iter_ndjson_batches(
    path: Path, schema: dict[str, pl.DataType], batch_bytes: int = 64 << 20
) -> Iterator[pl.DataFrame]:
    """Stream a (gzipped) JSON-lines file as DataFrames of the `schema` fields only, ~batch_bytes of text each.

    Memory stays at one batch of text plus the selected columns, so multi-GB dumps convert on a laptop.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        while True:
            try:
                lines = handle.readlines(batch_bytes)
            except _UNREADABLE as exc:  # truncated download, bad CRC
                raise _unreadable(path, exc) from None
            if not lines:
                return
            try:
                yield pl.read_ndjson(b"".join(lines), schema=schema)
            except pl.exceptions.PolarsError as exc:
                raise DataError(f"a JSON line could not be read: {str(exc).splitlines()[0]}", path=path,
                                fix="re-download the file (it may be truncated or corrupt)") from None


def require_columns(frame: pl.DataFrame, path: Path | str, role: str, needed: Sequence[tuple[str, str]]) -> None:
    """`needed` holds (column, config key that names it); a missing one is reported with the closest match."""
    for column, key in needed:
        if column in frame.columns:
            continue
        close = difflib.get_close_matches(column, frame.columns, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"the {role} file has no column {column!r}.{hint} Its columns are {frame.columns[:20]}",
            path=path,
            column=column,
            fix=f"rename the column in the file or set {key} to the right name",
        )


def blank_rows(frame: pl.DataFrame, candidates: pl.Series) -> pl.Series:
    """True for the rows of `frame` whose every field is empty or spaces: polars reads a blank line of a CSV as a
    row of nulls, which is no record at all, not one missing its id. Only `candidates` (rows already missing their
    id) are checked, since turning every column of a 30M-row log into text costs more than validating it."""
    if not bool(candidates.any()):
        return candidates
    rows = frame.filter(candidates)
    empty = [pl.col(c).str.strip_chars().fill_null("") == "" if dtype == pl.String
             else pl.col(c).is_null() for c, dtype in rows.schema.items()]
    blank = np.zeros(frame.height, dtype=bool)
    blank[np.flatnonzero(candidates.to_numpy())] = rows.select(pl.all_horizontal(empty)).to_series().to_numpy()
    return pl.Series("blank", blank)
