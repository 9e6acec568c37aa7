"""From source files to three standard tables, validating and counting every dropped row.

Standard interaction columns: user_id, item_id (str), timestamp (int64 epoch seconds), subsecond (int64 nanoseconds
past that second: the order of reads within one; optional, 0 when absent), order (int64 tie-break), rating (float,
optional), split_label (str, optional). Catalogue: item_id plus title, author, categories
(list[str]), numeric and categorical metadata. Users: user_id plus metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from booktower.config.data import ColumnMapping, DataConfig, SourceConfig
from booktower.data._mapping import Mapped, require_mapped
from booktower.data._rows import BLANK_FIX, drop_rows
from booktower.data.errors import DataError, DropLedger
from booktower.data.id_mismatch import CatalogueMismatch, diagnose, users_warning
from booktower.data.locations import SHOWN, TableFile
from booktower.data.readers import blank_rows
from booktower.data.side_tables import standardise_catalogue, standardise_users
from booktower.data.values import (
    PLACEHOLDERS, Parsed, implausible_cause, implausible_rows, implausible_years, read_numbers, read_timestamps,
    timestamp_unit_warning, unreadable_rows,
)
from booktower.utils.wording import counted

log = logging.getLogger(__name__)

@dataclass
class RawData:
    interactions: pl.DataFrame
    catalogue: pl.DataFrame | None
    users: pl.DataFrame | None
    input_paths: list[Path]
    set_to_missing: DropLedger = field(default_factory=DropLedger)
    """Metadata values (not rows) set to missing, by reason, with where they are: a negative price, a rating
    count that is not a number."""


PACKAGE_PREFIX = "pkg:"
_WARNED: set[str] = set()


def resolve_path(path: Path) -> Path:
    """`pkg:sample/x.csv` names a file bundled in `booktower/resources/` (found from any working directory)."""
    text = str(path)
    if not text.startswith(PACKAGE_PREFIX):
        return path
    from importlib.resources import files

    return Path(str(files("booktower").joinpath("resources", *text[len(PACKAGE_PREFIX):].split("/"))))


def resolve_source(source: SourceConfig) -> tuple[Path, Path | None, list[str]]:
    """Pick the files to read, falling back (with a warning) to the configured samples. A fallback is set only
    beside the paths it stands in for (`load_config` clears it when a user's file or --set names a path, even the
    default one), so a path the user chose that does not exist is an error, not a run on the sample. The paths
    are not compared with the defaults: a run's config read from another folder names them absolutely."""
    warnings: list[str] = []
    interactions = resolve_path(source.interactions)
    items = resolve_path(source.items) if source.items is not None else None
    fallback_interactions = resolve_path(source.fallback_interactions) if source.fallback_interactions else None
    fallback_items = resolve_path(source.fallback_items) if source.fallback_items else None
    if not interactions.exists() and fallback_interactions is not None:
        warnings.append(f"{interactions} not found: using the bundled sample {fallback_interactions} "
                        "(a small synthetic sample; put the full files there or run `booktower data fetch`)")
        interactions = fallback_interactions
        if fallback_items is not None:
            items = fallback_items
    elif items is not None and not items.exists() and fallback_items is not None:
        warnings.append(f"{items} not found: using the bundled sample {fallback_items}")
        items = fallback_items
    for message in warnings:
        if message not in _WARNED:  # prepare resolves twice (cache key, then reading): say it once
            _WARNED.add(message)
            log.warning(message)
    return interactions, items, warnings


def _clean_ids(raw: pl.Series) -> pl.Series:
    """Ids as text without surrounding spaces. Stripping copies the column, so it only runs when needed
    (at 30M rows a copy of the user ids is ~1 GB)."""
    text = raw.cast(pl.String)
    if bool(text.str.contains(r"^\s|\s$").any()):
        return text.str.strip_chars()
    return text


def _log_mapping(columns: ColumnMapping, path: Path, split_column: bool) -> list[Mapped]:
    mapped = [Mapped(columns.user, "data.columns.user", is_id=True),
              Mapped(columns.item, "data.columns.item", is_id=True), Mapped(columns.timestamp, "data.columns.timestamp")]
    mapped += [Mapped(name, f"data.columns.{key}", "null") for key in ("order", "rating")
               if (name := getattr(columns, key))]
    if split_column:
        if not columns.split:
            raise DataError("split.kind is `column` but no split column is named", path=path,
                            fix="set data.columns.split to the column holding train/validation/test labels")
        mapped.append(Mapped(columns.split, "data.columns.split"))
    return mapped


def standardise_interactions(
    table: TableFile, columns: ColumnMapping, ledger: DropLedger, *, split_column: bool
) -> tuple[pl.DataFrame, list[str]]:
    """The log as standard columns, its bad rows dropped and counted; and the warnings that cost rows."""
    frame, warnings = table.frame, []
    require_mapped(frame, table.path, "interactions", _log_mapping(columns, table.path, split_column))
    timestamps = read_timestamps(frame, columns.timestamp, columns.timestamp_unit)
    out = pl.DataFrame({
        "user_id": _clean_ids(frame[columns.user]),
        "item_id": _clean_ids(frame[columns.item]),
        "timestamp": timestamps.values,
        "subsecond": timestamps.subsecond,
    })
    unreadable = {"timestamp": unreadable_rows(timestamps, table, columns.timestamp, ledger, warnings=warnings)}
    file_order = pl.int_range(frame.height, dtype=pl.Int64, eager=True)
    if columns.order:
        order = _whole_numbers(read_numbers(frame, columns.order, "data.columns.order"))
        unreadable["order"] = unreadable_rows(order, table, columns.order, ledger, warnings=warnings)
        out = out.with_columns(order=order.values.cast(pl.Int64).fill_null(file_order))
    else:
        out = out.with_columns(order=file_order)
    out = out.with_columns(row=file_order)
    if columns.rating:
        rating = read_numbers(frame, columns.rating, "data.columns.rating")
        unreadable["rating"] = unreadable_rows(rating, table, columns.rating, ledger, warnings=warnings)
        out = out.with_columns(rating=rating.values)
    if split_column and columns.split:
        out = out.with_columns(split_label=frame[columns.split].cast(pl.String).str.strip_chars().str.to_lowercase())
    no_user = out.select(pl.col("user_id").is_null() | (pl.col("user_id") == "")).to_series()
    out = drop_rows(out, blank_rows(frame, no_user), "empty_row", ledger, table, None, fix=BLANK_FIX)
    out = _drop_unreadable(out, unreadable, columns, ledger, table)
    out = _drop_bad_ids(out, table, columns, ledger, warnings)
    out = _drop_bad_times(out, table, columns, ledger, timestamps.raw, warnings)
    return _drop_invalid(out, table, columns, ledger, split_column=split_column), warnings


def _whole_numbers(parsed: Parsed) -> Parsed:
    """An order column: `inf`, or a number too large for 64 bits, orders nothing and is unreadable, not a crash in
    the cast to integers."""
    whole = parsed.values.is_finite() & (parsed.values.abs() < 9.2e18)
    parsed.bad = parsed.bad | (parsed.values.is_not_null() & ~whole.fill_null(True))
    parsed.values = parsed.values.set(parsed.bad, None)
    return parsed


def _drop_unreadable(out: pl.DataFrame, unreadable: dict[str, pl.Series], columns: ColumnMapping,
                     ledger: DropLedger, table: TableFile) -> pl.DataFrame:
    """Drops (and counts, as `unparsable_<field>`) the rows whose timestamp, order or rating is text that is not
    one: under data.strict: false one such row is bad data, like an empty value, not a reason to stop."""
    marks = {f"unparsable:{field}": mask for field, mask in unreadable.items() if mask.any()}
    out = out.with_columns(**marks) if marks else out  # the masks follow the rows through each drop
    for field in unreadable:
        if f"unparsable:{field}" in marks:
            out = drop_rows(out, pl.col(f"unparsable:{field}"), f"unparsable_{field}", ledger, table,
                            getattr(columns, field), fix=f"fix those values, or remove the rows (data.columns.{field})")
    return out.drop(list(marks))


def _drop_bad_ids(out: pl.DataFrame, table: TableFile, columns: ColumnMapping, ledger: DropLedger,
                  warnings: list[str]) -> pl.DataFrame:
    """Drops (and counts) the rows without a reader or book id, or with a placeholder for one (`NULL`, `N/A`)."""
    for field, column, who in (("user_id", columns.user, "reader"), ("item_id", columns.item, "book")):
        out = drop_rows(out, pl.col(field).is_null() | (pl.col(field) == ""), f"missing_{field}", ledger, table,
                        column)
        placeholder = out.select(pl.col(field).str.to_lowercase().is_in(PLACEHOLDERS)).to_series()
        count = int(placeholder.sum())
        if not count:
            continue
        values = out.filter(placeholder)[field].unique(maintain_order=True).head(5).to_list()
        where = table.where(out.filter(placeholder)["row"].head(SHOWN).to_list(), count, named=True)
        fix = f"give those rows their {who}'s real id, or remove them"
        out = drop_rows(out, placeholder, f"placeholder_{field}", ledger, table, column, fix=fix)
        message = (f"{table.path}, column {column!r}: {counted(count, 'row')} {'has' if count == 1 else 'have'} a "
                   f"placeholder for the {who} id ({', '.join(map(repr, values))}) {where[0]}: dropped and counted as "
                   f"placeholder_{field}, not read as one {who} of that name. Fix: {fix}")
        _warn(warnings, message)
    return out


def _drop_bad_times(out: pl.DataFrame, table: TableFile, columns: ColumnMapping, ledger: DropLedger,
                    raw: pl.Series, warnings: list[str]) -> pl.DataFrame:
    """Drops (and counts) the rows without a time, and those whose time lies outside 1980-2100 in a log whose times
    lie inside (`values.implausible_rows`): epoch ms among seconds land in year ~49,500 and become a reader's
    test book; a 0 placeholder becomes the first read."""
    out = drop_rows(out, pl.col("timestamp").is_null(), "missing_timestamp", ledger, table, columns.timestamp)
    implausible = implausible_rows(out["timestamp"])
    if implausible is None or not implausible.any():
        return out
    bad = out.filter(implausible)
    count, unit = bad.height, columns.timestamp_unit
    sample = bad.with_columns(raw=raw.gather(bad["row"])).unique("raw", maintain_order=True).head(3)
    median = datetime.fromtimestamp(int(out["timestamp"].median()), UTC).date().isoformat()
    cause = implausible_cause(bad["timestamp"], unit)
    fix = (f"correct those values to {'ISO-8601 times' if unit == 'iso' else 'epoch ' + unit} like the rest of "
           "the column, or remove the rows")
    where = table.where(bad["row"].head(SHOWN).to_list(), count, named=True)
    out = drop_rows(out, implausible, "implausible_timestamp", ledger, table, columns.timestamp, fix=f"{cause}: {fix}")
    years = implausible_years(sample["timestamp"])
    message = (f"{table.path}, column {columns.timestamp!r}: {counted(count, 'timestamp')} (e.g. "
               f"{sample['raw'].to_list()}, read as {'year' if len(years) == 1 else 'years'} {', '.join(years)}) "
               f"{where[0]} "
               f"{'falls' if count == 1 else 'fall'} outside 1980-2100, while "
               f"the log's median time is {median}: {cause}. Those rows are dropped and counted as "
               f"implausible_timestamp. Fix: {fix}")
    _warn(warnings, message)
    return out


def _drop_invalid(
    out: pl.DataFrame, table: TableFile, columns: ColumnMapping, ledger: DropLedger, *, split_column: bool
) -> pl.DataFrame:
    """Drops (and counts) standardised interaction rows that lack a label or usable rating, or repeat a
    (reader, book) pair."""
    if split_column:
        # Like a missing id, a missing label is one row's defect: dropped and counted (an error under data.strict).
        # A label that split.labels does not map is a config mistake, and stays an error (`splits.from_column`).
        out = drop_rows(out, pl.col("split_label").is_null() | (pl.col("split_label") == ""), "missing_split_label",
                        ledger, table, columns.split, fix="label those rows train, validation or test (a row without "
                        "a label belongs to no part), or remove them")
    if columns.rating:
        lo, hi = columns.rating_range
        out = drop_rows(out, pl.col("rating").is_null(), "missing_rating", ledger, table, columns.rating)
        out = drop_rows(out, (pl.col("rating") < lo) | (pl.col("rating") > hi), "rating_out_of_range", ledger, table,
                        columns.rating)
        if columns.min_rating is not None:
            out = drop_rows(out, pl.col("rating") < columns.min_rating, "below_min_rating", ledger, table,
                            columns.rating, fix="lower data.columns.min_rating to keep them")
    duplicated = repeated_pairs(out)
    return drop_rows(out, duplicated, "duplicate_user_item", ledger, table, None,
                     fix="each (reader, book) pair keeps its earliest reading (by time, then order); deduplicate the "
                         "file to silence this")


def repeated_pairs(frame: pl.DataFrame) -> pl.Series:
    """True for every (user_id, item_id) row but the pair's earliest reading: the first by timestamp (to the
    nanosecond, with `subsecond`), then by `order` (data.columns.order, or file order), then by file row. A
    re-read is one reading, and which one stays must not depend on where the rows sit in the file: it decides
    the reader's held-out book.

    Exact, but hashed first: only rows whose 64-bit pair hash occurs twice go through the exact (and, at 30M
    rows, ~1.5 GB heavier) struct comparison, so a hash collision can never drop a row.
    """
    pair = pl.struct("user_id", "item_id")
    maybe = frame.select(pair.hash().is_duplicated()).to_series()
    if not bool(maybe.any()):
        return pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)
    when = [c for c in ("timestamp", "subsecond", "order") if c in frame.columns]
    candidates = (frame.select("user_id", "item_id", *when).with_row_index("_row").filter(maybe)
                  .sort([*when, "_row"]))
    later = candidates.filter(pair.is_first_distinct().not_())["_row"].to_numpy()
    repeated = np.zeros(frame.height, dtype=bool)
    repeated[later] = True
    return pl.Series("repeated", repeated)


def drop_unknown_items(
    interactions: pl.DataFrame, catalogue: pl.DataFrame, ledger: DropLedger, table: TableFile, column: str
) -> tuple[pl.DataFrame, CatalogueMismatch]:
    """Drops (and counts) rows whose book the catalogue lacks, with a diagnosis of why (`id_mismatch`)."""
    unknown = ~interactions["item_id"].is_in(catalogue["item_id"].implode())
    mismatch = diagnose(interactions["item_id"], catalogue["item_id"], unknown)
    dropped = drop_rows(interactions, unknown, "item_not_in_catalogue", ledger, table, column, fix=mismatch.fix())
    return dropped, mismatch


def _items_fallback(source: SourceConfig, interactions: Path, items: Path | None) -> str | None:
    """A sentence when the catalogue is the fallback sample but the log is not: their books will not match."""
    if items is None or source.items is None or items == resolve_path(source.items):
        return None
    if interactions != resolve_path(source.interactions):
        return None  # both fell back: the sample log and the sample catalogue belong together
    return (f"the catalogue is the bundled sample {items}, used because {source.items} does not exist; its books "
            "are not those of your interaction log")


def _nothing_left(path: Path, ledger: DropLedger, mismatch: CatalogueMismatch | None, catalogue_path: Path | None,
                  fallback: str | None) -> DataError:
    problem, fix = "no interactions are left after validation", ""
    if fallback:
        problem += f": most likely because {fallback}"
        fix = ("put your catalogue where data.source.items points, or set data.source.items to it "
               "(or to null to run without a catalogue); ")
    elif mismatch is not None and mismatch.n_unknown:
        problem += f": {mismatch.describe(catalogue_path or '?')}"
        fix = mismatch.fix() + "; "
    return DataError(problem, path=path, fix=f"{fix}check the dropped-row counts {ledger.as_dict()} and the column mapping")


def load_raw(config: DataConfig, ledger: DropLedger) -> tuple[RawData, list[str]]:
    """Read and validate the configured sources into standard tables."""
    from booktower.data.formats import read_source

    interactions_path, items_path, warnings = resolve_source(config.source)
    frames = read_source(config.source, interactions_path, items_path, config.columns)
    columns = config.columns
    source_rows = TableFile(frames.interactions, frames.interactions_path, frames.header)
    frames.interactions = pl.DataFrame()  # freed once standardised
    interactions, read_warnings = standardise_interactions(source_rows, columns, ledger,
                                                           split_column=config.split.kind == "column")
    warnings = [*warnings, *read_warnings]
    log_file = source_rows.slim()
    del source_rows
    unit_warning = timestamp_unit_warning(interactions["timestamp"], columns.timestamp_unit)
    if unit_warning:
        _warn(warnings, f"{frames.interactions_path}, column {columns.timestamp!r}: {unit_warning}")
    catalogue, mismatch, missing = None, None, DropLedger()
    if frames.items is not None:
        catalogue = standardise_catalogue(TableFile(frames.items, frames.items_path or Path("?"), frames.header),
                                          columns, ledger, missing, warnings)
        if config.drop_items_missing_from_catalogue:
            interactions, mismatch = drop_unknown_items(interactions, catalogue, ledger, log_file, columns.item)
            if mismatch.worth_a_warning():
                _warn(warnings, f"{mismatch.describe(frames.items_path or '?')}. Fix: {mismatch.fix()}")
    users = None
    if frames.users is not None:
        users = standardise_users(TableFile(frames.users, frames.users_path or Path("?"), frames.header), columns,
                                  ledger, missing, warnings)
        message = users_warning(interactions["user_id"], users["user_id"], frames.users_path or "?")
        if message:
            _warn(warnings, message)
    if interactions.height == 0:
        raise _nothing_left(frames.interactions_path, ledger, mismatch, frames.items_path,
                            _items_fallback(config.source, interactions_path, items_path))
    return RawData(interactions.drop("row"), catalogue, users, frames.paths, missing), warnings


def _warn(warnings: list[str], message: str) -> None:
    log.warning(message)
    warnings.append(message)
