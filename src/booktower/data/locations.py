"""Where rows are in the file they were read from, said as the file shows them, so a user can go and fix them: a
CSV's lines (the header is line 1, unless the format has none; a quoted field holding line breaks spans several
lines), a JSON-lines file's records and a Parquet file's rows, both counted from 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from booktower.data.readers import table_format

SHOWN = 5
"""How many rows a message names; it says when there are more."""


@dataclass(frozen=True)
class TableFile:
    """A table as read, in file order, and the file it came from."""

    frame: pl.DataFrame
    path: Path
    header: bool = True
    """Whether the file's first line names the columns (MovieLens's u.* files have no such line)."""

    def numbers(self, indices: list[int]) -> list[int]:
        """The file's own numbers (its lines, records or rows, from 1) of the rows at `indices` (from 0)."""
        if table_format(self.path) != "csv":
            return [i + 1 for i in indices]
        return csv_lines(self.frame, indices, first_row_line=2 if self.header else 1)

    def slim(self) -> TableFile:
        """This file's positions without the table: only the text columns holding a line break (none, as a
        rule) are kept, since only they shift a CSV's lines away from its rows."""
        if table_format(self.path) != "csv":
            return TableFile(pl.DataFrame(), self.path, self.header)
        spanning = [name for name, dtype in self.frame.schema.items()
                    if dtype == pl.String and bool(self.frame[name].str.contains("\n", literal=True).any())]
        return TableFile(self.frame.select(spanning), self.path, self.header)

    def where(self, indices: list[int], total: int, named: bool = False) -> tuple[str, list[int]]:
        """The first rows of `total` in words, as the file numbers them ("on lines 3 and 7 of the file (the header
        is line 1)", or "of books.csv" when `named`; ", ..." when `total` is more than `indices`), and as those
        numbers."""
        indices = indices[:SHOWN]
        numbers = self.numbers(indices)
        more = ", ..." if total > len(indices) else ""
        of = self.path.name if named else "the file"
        fmt = table_format(self.path)
        if fmt == "csv":
            first = " (the header is line 1)" if self.header else ""
            return f"on {listed('line', numbers, more)} of {of}{first}", numbers
        unit = "record" if fmt == "jsonl" else "row"
        return f"in {listed(unit, numbers, more)} of {of} (the first {unit} is 1)", numbers

    def where_mask(self, mask: pl.Series, named: bool = False) -> tuple[str, list[int]]:
        """`where` for the rows that `mask` (one entry a row of `frame`) marks."""
        indices = [int(i) for i in pl.arg_where(mask, eager=True).head(SHOWN).to_list()]
        return self.where(indices, int(mask.sum()), named)


def csv_lines(frame: pl.DataFrame, indices: list[int], first_row_line: int = 2) -> list[int]:
    """The lines of a CSV file where the rows at `indices` (from 0, in file order) start: one line a row from
    `first_row_line` (2 below a header), except that a quoted field holding line breaks spans more than one."""
    if not indices:
        return []
    head = frame.head(max(indices) + 1)
    texts = [name for name, dtype in head.schema.items() if dtype == pl.String]
    if not texts:
        return [i + first_row_line for i in indices]
    breaks = head.select(pl.sum_horizontal(pl.col(texts).str.count_matches("\n").fill_null(0))).to_series()
    before = (breaks.cum_sum() - breaks).to_list()
    return [i + first_row_line + int(before[i]) for i in indices]


def listed(unit: str, numbers: list[int], more: str = "") -> str:
    """Numbers in words: "line 3", "lines 3 and 7", "lines 3, 7, 9, 10, 12, ..." (`more`: ", ...")."""
    if len(numbers) == 1 and not more:
        return f"{unit} {numbers[0]}"
    if more:
        return f"{unit}s {', '.join(map(str, numbers))}{more}"
    return f"{unit}s {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
