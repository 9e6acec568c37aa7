"""Where an unreadable value is, said so a user can find it: the file line an editor shows for a CSV (the header is
line 1, a quoted field with line breaks spans several), the record or row counted from 1 for JSON lines and
Parquet; and counted in agreement with the number ("1 value is not a number", "3 values are not numbers")."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from booktower.data.errors import DataError
from booktower.data.locations import TableFile
from booktower.data.readers import read_table
from booktower.data.values import parse_numeric, parse_timestamps


def _numbers_error(path: Path) -> DataError:
    with pytest.raises(DataError) as exc:
        parse_numeric(TableFile(read_table(path, "items"), path), "average_rating", "data.columns.item_numeric")
    return exc.value


def test_one_bad_value_in_a_csv_is_named_by_its_file_line(tmp_path):
    books = tmp_path / "books.csv"  # line 1 header, line 2-3 a book whose quoted title spans two lines
    books.write_text('item_id,title,average_rating\nB1,"Two\nLines",4.5\nB2,Plain,abc\n')
    error = _numbers_error(books)
    assert str(error).startswith(f"file {books}, column 'average_rating': 1 value is not a number ('abc') on line 4 "
                                 "of the file (the header is line 1). Fix: ")
    assert error.rows == [4] and "rows" not in str(error)


def test_several_bad_values_are_plural_and_list_their_lines(tmp_path):
    books = tmp_path / "books.csv"
    books.write_text("item_id,average_rating\nB1,x\nB2,4\nB3,y\nB4,z\n")
    assert "3 values are not numbers (e.g. ['x', 'y', 'z']) on lines 2, 4 and 5 of the file (the header is line 1)" \
        in str(_numbers_error(books))


def test_more_bad_values_than_shown_say_so(tmp_path):
    books = tmp_path / "books.csv"
    books.write_text("item_id,average_rating\n" + "".join(f"B{i},bad\n" for i in range(7)))
    error = _numbers_error(books)
    assert "7 values are not numbers (e.g. ['bad']) on lines 2, 3, 4, 5, 6, ... of the file" in str(error)
    assert error.rows == [2, 3, 4, 5, 6]


def test_parquet_and_json_lines_count_their_rows_from_one(tmp_path):
    frame = pl.DataFrame({"average_rating": ["4", "four"]})
    with pytest.raises(DataError, match=r"1 value is not a number \('four'\) in row 2 of the file \(the first row "
                                        r"is 1\)"):
        parse_numeric(TableFile(frame, tmp_path / "books.parquet"), "average_rating", "data.columns.item_numeric")
    with pytest.raises(DataError, match=r"1 timestamp could not be parsed as epoch s \('soon'\) in record 2 of the "
                                        r"file \(the first record is 1\)"):
        parse_timestamps(TableFile(pl.DataFrame({"t": ["1600000000", "soon"]}), tmp_path / "log.jsonl"), "t", "s")
