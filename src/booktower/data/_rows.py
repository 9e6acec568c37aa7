"""Dropping a table's rows for one reason: counted in the ledger with where they sit in the file."""

from __future__ import annotations

import logging

import polars as pl

from booktower.data.errors import DropLedger
from booktower.data.locations import SHOWN, TableFile
from booktower.utils.wording import counted

log = logging.getLogger(__name__)

BLANK_FIX = "remove the blank lines (a row with every field empty holds no record)"


def drop_rows(
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
