"""From source files to three standard tables, validating and counting every dropped row.

Standard interaction columns: user_id, item_id (str), timestamp (int64 epoch seconds), order (int64 tie-break),
rating (float, optional), split_label (str, optional). Catalogue: item_id plus title, author, categories
(list[str]), numeric and categorical metadata. Users: user_id plus metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from booktower.config.data import ColumnMapping, DataConfig, SourceConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.id_mismatch import CatalogueMismatch, diagnose, users_warning
from booktower.data.readers import blank_rows, require_columns
from booktower.data.textparse import parse_list_column, parse_text_column
from booktower.data.locations import SHOWN, TableFile
from booktower.data.values import read_numbers, read_timestamps, timestamp_unit_warning, unreadable_rows
from booktower.utils.wording import counted

log = logging.getLogger(__name__)

@dataclass
class RawData:
    interactions: pl.DataFrame
    catalogue: pl.DataFrame | None
    users: pl.DataFrame | None
    input_paths: list[Path]


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


def standardise_interactions(
    table: TableFile, columns: ColumnMapping, ledger: DropLedger, *, split_column: bool
) -> pl.DataFrame:
    frame, path = table.frame, table.path
    needed = [(columns.user, "data.columns.user"), (columns.item, "data.columns.item"),
              (columns.timestamp, "data.columns.timestamp")]
    if columns.order:
        needed.append((columns.order, "data.columns.order"))
    if columns.rating:
        needed.append((columns.rating, "data.columns.rating"))
    if split_column:
        if not columns.split:
            raise DataError("split.kind is `column` but no split column is named", path=path,
                            fix="set data.columns.split to the column holding train/validation/test labels")
        needed.append((columns.split, "data.columns.split"))
    require_columns(frame, path, "interactions", needed)

    timestamps = read_timestamps(frame, columns.timestamp, columns.timestamp_unit)
    out = pl.DataFrame({
        "user_id": _clean_ids(frame[columns.user]),
        "item_id": _clean_ids(frame[columns.item]),
        "timestamp": timestamps.values,
    })
    unreadable = {"timestamp": unreadable_rows(timestamps, table, columns.timestamp, ledger)}
    file_order = pl.int_range(frame.height, dtype=pl.Int64, eager=True)
    if columns.order:
        order = read_numbers(frame, columns.order, "data.columns.order")
        unreadable["order"] = unreadable_rows(order, table, columns.order, ledger)
        out = out.with_columns(order=order.values.cast(pl.Int64).fill_null(file_order))
    else:
        out = out.with_columns(order=file_order)
    out = out.with_columns(row=file_order)
    if columns.rating:
        rating = read_numbers(frame, columns.rating, "data.columns.rating")
        unreadable["rating"] = unreadable_rows(rating, table, columns.rating, ledger)
        out = out.with_columns(rating=rating.values)
    if split_column and columns.split:
        out = out.with_columns(split_label=frame[columns.split].cast(pl.String).str.strip_chars().str.to_lowercase())
    no_user = out.select(pl.col("user_id").is_null() | (pl.col("user_id") == "")).to_series()
    out = _drop(out, blank_rows(frame, no_user), "empty_row", ledger, table, None, fix=_BLANK_FIX)
    out = _drop_unreadable(out, unreadable, columns, ledger, table)
    return _drop_invalid(out, table, columns, ledger, split_column=split_column)


def _drop_unreadable(out: pl.DataFrame, unreadable: dict[str, pl.Series], columns: ColumnMapping,
                     ledger: DropLedger, table: TableFile) -> pl.DataFrame:
    """Drops (and counts, as `unparsable_<field>`) the rows whose timestamp, order or rating is text that is not
    one: under data.strict: false one such row is bad data, like an empty value, not a reason to stop."""
    marks = {f"unparsable:{field}": mask for field, mask in unreadable.items() if mask.any()}
    out = out.with_columns(**marks) if marks else out  # the masks follow the rows through each drop
    for field in unreadable:
        if f"unparsable:{field}" in marks:
            out = _drop(out, pl.col(f"unparsable:{field}"), f"unparsable_{field}", ledger, table,
                        getattr(columns, field), fix=f"fix those values, or remove the rows (data.columns.{field})")
    return out.drop(list(marks))


_BLANK_FIX = "remove the blank lines (a row with every field empty holds no record)"


def _drop_invalid(
    out: pl.DataFrame, table: TableFile, columns: ColumnMapping, ledger: DropLedger, *, split_column: bool
) -> pl.DataFrame:
    """Drops (and counts) standardised interaction rows that lack an id, time, label or usable rating, or repeat a
    (reader, book) pair."""
    out = _drop(out, (pl.col("user_id").is_null() | (pl.col("user_id") == "")), "missing_user_id", ledger, table, columns.user)
    out = _drop(out, (pl.col("item_id").is_null() | (pl.col("item_id") == "")), "missing_item_id", ledger, table, columns.item)
    out = _drop(out, pl.col("timestamp").is_null(), "missing_timestamp", ledger, table, columns.timestamp)
    if split_column:
        # Like a missing id, a missing label is one row's defect: dropped and counted (an error under data.strict).
        # A label that split.labels does not map is a config mistake, and stays an error (`splits.from_column`).
        out = _drop(out, pl.col("split_label").is_null() | (pl.col("split_label") == ""), "missing_split_label",
                    ledger, table, columns.split, fix="label those rows train, validation or test (a row without a "
                    "label belongs to no part), or remove them")
    if columns.rating:
        lo, hi = columns.rating_range
        out = _drop(out, pl.col("rating").is_null(), "missing_rating", ledger, table, columns.rating)
        out = _drop(out, (pl.col("rating") < lo) | (pl.col("rating") > hi), "rating_out_of_range", ledger, table, columns.rating)
        if columns.min_rating is not None:
            out = _drop(out, pl.col("rating") < columns.min_rating, "below_min_rating", ledger, table, columns.rating,
                        fix="lower data.columns.min_rating to keep them")
    duplicated = repeated_pairs(out)
    out = _drop(out, duplicated, "duplicate_user_item", ledger, table, None,
                fix="each (reader, book) pair keeps its earliest reading (by time, then order); deduplicate the "
                    "file to silence this")
    return out


def repeated_pairs(frame: pl.DataFrame) -> pl.Series:
    """True for every (user_id, item_id) row but the pair's earliest reading: the first by timestamp, then by
    `order` (data.columns.order, or file order), then by file row. A re-read is one reading, and which one stays
    must not depend on where the rows sit in the file: it decides the reader's held-out book.

    Exact, but hashed first: only rows whose 64-bit pair hash occurs twice go through the exact (and, at 30M
    rows, ~1.5 GB heavier) struct comparison, so a hash collision can never drop a row.
    """
    pair = pl.struct("user_id", "item_id")
    maybe = frame.select(pair.hash().is_duplicated()).to_series()
    if not bool(maybe.any()):
        return pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)
    when = [c for c in ("timestamp", "order") if c in frame.columns]
    candidates = (frame.select("user_id", "item_id", *when).with_row_index("_row").filter(maybe)
                  .sort([*when, "_row"]))
    later = candidates.filter(pair.is_first_distinct().not_())["_row"].to_numpy()
    repeated = np.zeros(frame.height, dtype=bool)
    repeated[later] = True
    return pl.Series("repeated", repeated)


def _drop(
    frame: pl.DataFrame, condition: pl.Expr | pl.Series, reason: str, ledger: DropLedger, table: TableFile,
    column: str | None, fix: str = "fix or remove those rows, or set data.strict: false to drop them",
) -> pl.DataFrame:
    """`frame` without the rows `condition` marks, counted under `reason` with where they are in `table`'s file
    (`frame["row"]`: each row's position in it)."""
    mask = frame.select(condition).to_series() if isinstance(condition, pl.Expr) else condition
    count = int(mask.sum())
    if count:
        where = table.where(frame.filter(mask)["row"].head(SHOWN).to_list(), count, named=True)
        ledger.drop(reason, count, path=table.path, column=column, where=where, fix=fix)
        log.info("dropped %s (%s) %s", counted(count, "row"), reason, where[0])
        return frame.filter(~mask)
    return frame


def _numbers_as_missing(table: TableFile, column: str, key: str, ledger: DropLedger, name: str) -> pl.Series:
    """A metadata column as numbers. Under data.strict: false a value that is not a number (`cheap`) is treated
    as missing, like an empty one, and counted as `<table>_unparsable_<column>`: one bad price is no reason to
    drop a book, nor to stop."""
    parsed = read_numbers(table.frame, column, key)
    unreadable = unreadable_rows(parsed, table, column, ledger, outcome="they are treated as missing and counted")
    if unreadable.any():
        ledger.drop(f"{name}_unparsable_{column}", int(unreadable.sum()), path=table.path, column=column,
                    where=table.where_mask(unreadable, named=True),
                    fix=f"{parsed.fix}; such values are treated as missing")
    return parsed.values


def standardise_catalogue(table: TableFile, columns: ColumnMapping, ledger: DropLedger) -> pl.DataFrame:
    frame = table.frame
    needed = [(columns.item, "data.columns.item")]
    for key in ("item_title", "item_author", "item_categories"):
        name = getattr(columns, key)
        if name:
            needed.append((name, f"data.columns.{key}"))
    needed += [(c, "data.columns.item_numeric") for c in columns.item_numeric]
    needed += [(c, "data.columns.item_categorical") for c in columns.item_categorical]
    require_columns(frame, table.path, "items", needed)

    out = frame.select(pl.col(columns.item).cast(pl.String).str.strip_chars().alias("item_id"))
    out = out.with_columns(
        title=parse_text_column(frame[columns.item_title]) if columns.item_title else pl.lit("", dtype=pl.String),
        author=frame[columns.item_author].cast(pl.String).fill_null("") if columns.item_author else pl.lit(""),
        categories=parse_list_column(frame[columns.item_categories]) if columns.item_categories
        else pl.lit([], dtype=pl.List(pl.String)),
        row=pl.int_range(frame.height, dtype=pl.Int64),
    )
    for name in columns.item_numeric:
        values = _numbers_as_missing(table, name, "data.columns.item_numeric", ledger, "catalogue")
        out = out.with_columns(values.alias(f"num:{name}"))
    for name in columns.item_categorical:
        out = out.with_columns(frame[name].cast(pl.String).alias(f"cat:{name}"))
    no_id = out.select(pl.col("item_id").is_null() | (pl.col("item_id") == "")).to_series()
    out = _drop(out, blank_rows(frame, no_id), "catalogue_empty_row", ledger, table, None, fix=_BLANK_FIX)
    out = _drop(out, pl.col("item_id").is_null() | (pl.col("item_id") == ""), "catalogue_missing_item_id", ledger, table,
                columns.item)
    out = _drop(out, pl.col("item_id").is_first_distinct().not_(), "catalogue_duplicate_item", ledger, table, columns.item,
                fix="each book must appear once in the catalogue; the first row is kept")
    for name in columns.item_nonnegative:
        negative = out[f"num:{name}"] < 0
        count = int(negative.fill_null(False).sum())
        if count:
            where = table.where(out.filter(negative.fill_null(False))["row"].head(SHOWN).to_list(), count, named=True)
            ledger.drop(f"negative_{name}", count, path=table.path, column=name, where=where,
                        fix=f"{name} must be >= 0; negative values are removed (treated as missing)")
            out = out.with_columns(pl.when(pl.col(f"num:{name}") < 0).then(None).otherwise(pl.col(f"num:{name}")).alias(f"num:{name}"))
    return out.drop("row")


def standardise_users(table: TableFile, columns: ColumnMapping, ledger: DropLedger) -> pl.DataFrame:
    frame = table.frame
    needed = [(columns.user, "data.columns.user")]
    needed += [(c, "data.columns.user_numeric") for c in columns.user_numeric]
    needed += [(c, "data.columns.user_categorical") for c in columns.user_categorical]
    require_columns(frame, table.path, "users", needed)
    out = frame.select(pl.col(columns.user).cast(pl.String).str.strip_chars().alias("user_id"))
    out = out.with_columns(row=pl.int_range(frame.height, dtype=pl.Int64))
    for name in columns.user_numeric:
        values = _numbers_as_missing(table, name, "data.columns.user_numeric", ledger, "users")
        out = out.with_columns(values.alias(f"num:{name}"))
    for name in columns.user_categorical:
        out = out.with_columns(frame[name].cast(pl.String).alias(f"cat:{name}"))
    no_id = out.select(pl.col("user_id").is_null() | (pl.col("user_id") == "")).to_series()
    out = _drop(out, blank_rows(frame, no_id), "users_empty_row", ledger, table, None, fix=_BLANK_FIX)
    out = _drop(out, pl.col("user_id").is_null() | (pl.col("user_id") == ""), "users_missing_user_id", ledger, table,
                columns.user, fix="give each row of the users table its reader's id, or remove the row")
    out = _drop(out, pl.col("user_id").is_first_distinct().not_(), "users_duplicate_user", ledger, table, columns.user)
    return out.drop("row")


def drop_unknown_items(
    interactions: pl.DataFrame, catalogue: pl.DataFrame, ledger: DropLedger, table: TableFile
) -> tuple[pl.DataFrame, CatalogueMismatch]:
    """Drops (and counts) rows whose book the catalogue lacks, with a diagnosis of why (`id_mismatch`)."""
    unknown = ~interactions["item_id"].is_in(catalogue["item_id"].implode())
    mismatch = diagnose(interactions["item_id"], catalogue["item_id"], unknown)
    return _drop(interactions, unknown, "item_not_in_catalogue", ledger, table, "item", fix=mismatch.fix()), mismatch


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
    interactions = standardise_interactions(source_rows, columns, ledger, split_column=config.split.kind == "column")
    log_file = source_rows.slim()
    del source_rows
    unit_warning = timestamp_unit_warning(interactions["timestamp"], columns.timestamp_unit)
    if unit_warning:
        log.warning(unit_warning)
        warnings = [*warnings, unit_warning]
    catalogue, mismatch = None, None
    if frames.items is not None:
        catalogue = standardise_catalogue(TableFile(frames.items, frames.items_path or Path("?"), frames.header),
                                          columns, ledger)
        if config.drop_items_missing_from_catalogue:
            interactions, mismatch = drop_unknown_items(interactions, catalogue, ledger, log_file)
            if mismatch.worth_a_warning():
                message = f"{mismatch.describe(frames.items_path or '?')}. Fix: {mismatch.fix()}"
                log.warning(message)
                warnings = [*warnings, message]
    users = None
    if frames.users is not None:
        users = standardise_users(TableFile(frames.users, frames.users_path or Path("?"), frames.header), columns, ledger)
        message = users_warning(interactions["user_id"], users["user_id"], frames.users_path or "?")
        if message:
            log.warning(message)
            warnings = [*warnings, message]
    if interactions.height == 0:
        raise _nothing_left(frames.interactions_path, ledger, mismatch, frames.items_path,
                            _items_fallback(config.source, interactions_path, items_path))
    return RawData(interactions.drop("row"), catalogue, users, frames.paths), warnings
