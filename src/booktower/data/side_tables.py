"""The catalogue and the reader table, standardised: ids as text, metadata typed. A row without a usable id is
dropped and counted; a metadata value that cannot be used (`cheap`, a negative price) is set to missing and
counted apart, in `set_to_missing`: the book or reader stays."""

from __future__ import annotations

import polars as pl

from booktower.config.data import ColumnMapping
from booktower.data._mapping import Mapped, require_mapped
from booktower.data._rows import BLANK_FIX, drop_rows
from booktower.data.errors import DataError, DropLedger
from booktower.data.locations import SHOWN, TableFile
from booktower.data.readers import blank_rows
from booktower.data.textparse import parse_list_column, parse_text_column
from booktower.data.values import PLACEHOLDERS, read_numbers, unreadable_rows
from booktower.utils.wording import counted


def catalogue_mapping(columns: ColumnMapping) -> list[Mapped]:
    """The catalogue's mapped columns: its id (required), the optional text columns, the numeric and categorical
    lists."""
    own_key = columns.catalogue_item is not None
    key = "data.columns.catalogue_item" if own_key else "data.columns.item"
    fix = ("set data.columns.catalogue_item to the catalogue's book id column" if own_key else
           "data.columns.item names the book id column of both files; if the catalogue names it otherwise than the "
           "log, set data.columns.catalogue_item to the catalogue's name (e.g. --set "
           "data.columns.catalogue_item={near}), and data.columns.item stays the log's")
    mapped = [Mapped(columns.catalogue_id, key, fix=fix, is_id=True)]
    mapped += [Mapped(name, f"data.columns.{k}", "null") for k in ("item_title", "item_author", "item_categories")
               if (name := getattr(columns, k))]
    mapped += [Mapped(c, "data.columns.item_numeric", "[]") for c in columns.item_numeric]
    mapped += [Mapped(c, "data.columns.item_categorical", "[]") for c in columns.item_categorical]
    return mapped


def standardise_catalogue(table: TableFile, columns: ColumnMapping, ledger: DropLedger, missing: DropLedger,
                          warnings: list[str]) -> pl.DataFrame:
    """`missing` counts the values set to missing; `warnings` gains what the rows cost."""
    frame = table.frame
    require_mapped(frame, table.path, "items", catalogue_mapping(columns), lists={
        "data.columns.item_count_columns": columns.item_count_columns,
        "data.columns.item_nonnegative": columns.item_nonnegative})
    out = frame.select(pl.col(columns.catalogue_id).cast(pl.String).str.strip_chars().alias("item_id"))
    out = out.with_columns(
        title=parse_text_column(frame[columns.item_title]) if columns.item_title else pl.lit("", dtype=pl.String),
        author=frame[columns.item_author].cast(pl.String).fill_null("") if columns.item_author else pl.lit(""),
        categories=parse_list_column(frame[columns.item_categories]) if columns.item_categories
        else pl.lit([], dtype=pl.List(pl.String)),
        row=pl.int_range(frame.height, dtype=pl.Int64),
    )
    out = _metadata(out, table, "catalogue", "item", columns.item_numeric, columns.item_categorical, ledger, missing,
                    warnings)
    out = _drop_rows_without_ids(out, table, "catalogue", "item_id", columns.catalogue_id, ledger,
                                 fix="give those books their real id, or remove the rows")
    out = drop_rows(out, pl.col("item_id").is_first_distinct().not_(), "catalogue_duplicate_item", ledger, table,
                    columns.catalogue_id, fix="each book must appear once in the catalogue; the first row is kept")
    for name in columns.item_nonnegative:
        negative = (out[f"num:{name}"] < 0).fill_null(False)
        rows = out.filter(negative)["row"]
        _count_missing(missing, ledger.strict, f"negative_{name}", rows, table, name,
                       fix=f"{name} must be >= 0: correct those values (a negative one is set to missing, the book "
                           "stays)")
        out = out.with_columns(pl.when(negative).then(None).otherwise(pl.col(f"num:{name}")).alias(f"num:{name}"))
    return out.drop("row")


def _metadata(out: pl.DataFrame, table: TableFile, name: str, side: str, numeric: list[str], categorical: list[str],
              ledger: DropLedger, missing: DropLedger, warnings: list[str]) -> pl.DataFrame:
    """`out` with the table's `num:` columns (a value that is not a number set to missing, counted) and `cat:` ones."""
    for column in numeric:
        values = _numbers_as_missing(table, column, f"data.columns.{side}_numeric", ledger, missing, name, warnings)
        out = out.with_columns(values.alias(f"num:{column}"))
    for column in categorical:
        out = out.with_columns(table.frame[column].cast(pl.String).alias(f"cat:{column}"))
    return out


def _drop_rows_without_ids(out: pl.DataFrame, table: TableFile, name: str, id_field: str, id_column: str,
                           ledger: DropLedger, fix: str) -> pl.DataFrame:
    """Blank rows, rows without an id, and rows whose id is a placeholder (`NULL`, `n/a`: as in the log, no reader
    or book of that name), each dropped and counted under `<name>_...`."""
    no_id = out.select(pl.col(id_field).is_null() | (pl.col(id_field) == "")).to_series()
    out = drop_rows(out, blank_rows(table.frame, no_id), f"{name}_empty_row", ledger, table, None, fix=BLANK_FIX)
    out = drop_rows(out, pl.col(id_field).is_null() | (pl.col(id_field) == ""), f"{name}_missing_{id_field}", ledger,
                    table, id_column, fix=fix)
    return drop_rows(out, pl.col(id_field).str.to_lowercase().is_in(PLACEHOLDERS), f"{name}_placeholder_{id_field}",
                     ledger, table, id_column, fix=fix)


def standardise_users(table: TableFile, columns: ColumnMapping, ledger: DropLedger, missing: DropLedger,
                      warnings: list[str]) -> pl.DataFrame:
    frame = table.frame
    mapped = [Mapped(columns.user, "data.columns.user", is_id=True)]
    mapped += [Mapped(c, "data.columns.user_numeric", "[]") for c in columns.user_numeric]
    mapped += [Mapped(c, "data.columns.user_categorical", "[]") for c in columns.user_categorical]
    require_mapped(frame, table.path, "users", mapped)
    out = frame.select(pl.col(columns.user).cast(pl.String).str.strip_chars().alias("user_id"))
    out = out.with_columns(row=pl.int_range(frame.height, dtype=pl.Int64))
    out = _metadata(out, table, "users", "user", columns.user_numeric, columns.user_categorical, ledger, missing,
                    warnings)
    out = _drop_rows_without_ids(out, table, "users", "user_id", columns.user, ledger,
                                 fix="give each row of the users table its reader's id, or remove the row")
    out = drop_rows(out, pl.col("user_id").is_first_distinct().not_(), "users_duplicate_user", ledger, table,
                    columns.user)
    return out.drop("row")


def _numbers_as_missing(table: TableFile, column: str, key: str, ledger: DropLedger, missing: DropLedger, name: str,
                        warnings: list[str]) -> pl.Series:
    """A metadata column as numbers. Under data.strict: false a value that is not a number (`cheap`) is set to
    missing, like an empty one, and counted as `<table>_unparsable_<column>`: one bad price is no reason to drop a
    book, nor to stop."""
    parsed = read_numbers(table.frame, column, key)
    unreadable = unreadable_rows(parsed, table, column, ledger, outcome="they are set to missing and counted",
                                 warnings=warnings)
    rows = pl.arg_where(unreadable, eager=True).cast(pl.Int64)
    _count_missing(missing, ledger.strict, f"{name}_unparsable_{column}", rows, table, column,
                   fix=f"{parsed.fix}; such values are set to missing")
    return parsed.values


def _count_missing(missing: DropLedger, strict: bool, reason: str, rows: pl.Series, table: TableFile, column: str,
                   fix: str) -> None:
    """Counts the values at file rows `rows` set to missing under `reason`, with where they are; an error under
    data.strict, which lets no value change unseen."""
    if rows.len() == 0:
        return
    where = table.where(rows.head(SHOWN).to_list(), rows.len(), named=True)
    if strict:
        error = DataError(f"{counted(rows.len(), 'value')} would be set to missing ({reason}) {where[0]} and "
                          "data.strict is on", path=table.path, column=column, fix=fix)
        error.rows = where[1]
        raise error
    missing.drop(reason, rows.len(), path=table.path, column=column, where=where, fix=fix)
