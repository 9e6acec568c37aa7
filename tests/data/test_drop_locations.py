"""Dropped rows are named where a user finds them in the file (data_summary.json's `dropped_where`): the line of a
CSV (below its header, if it has one; a quoted field with line breaks spans several), the row of a Parquet file,
the record of JSON lines."""

from __future__ import annotations

import polars as pl
import pytest
from rich.console import Console

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare
from booktower.data.summary import print_summary


def _movielens(folder, ratings: str):
    folder.mkdir()
    (folder / "u.data").write_text(ratings)
    genres = "|".join(["0"] * 19)
    (folder / "u.item").write_text("".join(f"{i}|Film {i} (1995)|01-Jan-1995||http://x|{genres}\n" for i in (1, 2, 3)))
    (folder / "u.user").write_text("1|24|M|writer|00000\n2|53|F|other|00000\n")
    return DataConfig.model_validate({
        "source": {"format": "movielens-100k", "interactions": str(folder), "items": None},
        "columns": {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "timestamp_unit": "s",
                    "rating": "rating", "item_title": "title", "item_author": None, "item_categories": "genres",
                    "item_numeric": [], "item_count_columns": [], "item_nonnegative": []},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def test_movielens_headerless_files_are_named_by_their_own_lines(tmp_path):
    ratings = "1\t1\t5\t881250949\n1\t2\t4\tsoon\n2\t3\t3\t881250951\n2\t1\t3\t881250952\n"  # line 2: bad time
    ledger = DropLedger()
    load_raw(_movielens(tmp_path / "ml", ratings), ledger)
    assert ledger.notes == {"unparsable_timestamp": "on line 2 of u.data"}
    strict = _movielens(tmp_path / "ml-strict", ratings).model_copy(update={"strict": True})
    with pytest.raises(DataError, match=r"\('soon'\) on line 2 of the file\. Fix") as error:
        load_raw(strict, DropLedger(strict=True))
    assert error.value.rows == [2] and "the header is" not in str(error.value)


def test_a_parquet_log_names_its_rows_from_one(tmp_path):
    pl.DataFrame({"parent_asin": ["B1", "B2", "B3"], "userId": ["U1", None, "U2"],
                  "timestamp": [1_600_000_000_000, 1_600_000_001_000, 1_600_000_002_000]}).write_parquet(
        tmp_path / "log.parquet")
    config = DataConfig.model_validate({"source": {"interactions": str(tmp_path / "log.parquet"), "items": None},
                                        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None})
    ledger = DropLedger()
    load_raw(config, ledger)
    assert ledger.notes == {"missing_user_id": "in row 2 of log.parquet (the first row is 1)"}


def test_a_multi_line_field_shifts_the_lines_even_after_the_log_is_freed(tmp_path):
    """Books missing from the catalogue are found after the raw log is released: the line numbers still count
    the review text's line breaks."""
    (tmp_path / "log.csv").write_text('parent_asin,userId,timestamp,review\nB1,U1,1600000000000,"good\n\nbook"\n'
                                      "B2,U1,1600000001000,fine\nB9,U2,1600000002000,odd\n")
    (tmp_path / "books.csv").write_text("parent_asin,title\nB1,One\nB2,Two\n")
    config = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": str(tmp_path / "books.csv")},
        "columns": {"item_title": "title", "item_author": None, "item_categories": None, "item_numeric": [],
                    "item_count_columns": [], "item_nonnegative": []},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    ledger = DropLedger()
    load_raw(config, ledger)
    assert ledger.notes["item_not_in_catalogue"] == "on line 6 of log.csv (the header is line 1)"


def test_the_summary_records_and_prints_where_the_dropped_rows_are(tmp_path):
    body = "parent_asin,userId,timestamp\n" + "".join(f"B{i},U{i % 4},{1_600_000_000_000 + i * 1000}\n"
                                                       for i in range(24))
    (tmp_path / "log.csv").write_text(body + "B1,,1600000099000\n")
    config = DataConfig.model_validate({"source": {"interactions": str(tmp_path / "log.csv"), "items": None},
                                        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None})
    data, _ = prepare(config)
    assert data.summary["dropped"] == {"missing_user_id": 1}
    assert data.summary["dropped_where"] == {"missing_user_id": "on line 26 of log.csv (the header is line 1)"}
    console = Console(record=True, width=200)
    print_summary(data.summary, console)
    assert "1 (on line 26 of log.csv (the header is line 1))" in console.export_text()


def test_a_movielens_line_with_an_extra_field_is_named(tmp_path):
    ratings = "1\t1\t5\t881250949\n1\t2\t4\t881250950\textra\n2\t3\t3\t881250951\n"
    with pytest.raises(DataError, match=r"every line of u\.data holds 4 fields separated by '\\t', and line 2 has 5 "
                                        r"fields\. Fix: correct or delete that line"):
        load_raw(_movielens(tmp_path / "ml", ratings), DropLedger())
