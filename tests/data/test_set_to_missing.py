"""A catalogue value that cannot be used (a negative price, a price that is not a number) is set to missing and
the book stays: counted under `set_to_missing`, apart from `dropped`, which counts only rows really dropped; the
printed table says "set to missing", and the "values are not numbers" warning reaches data_summary.json."""

from __future__ import annotations

import pytest
from rich.console import Console

from booktower.config.data import DataConfig
from booktower.data.errors import DataError
from booktower.data.prepare import prepare
from booktower.data.summary import print_summary

LOG = "".join(["user_id,item_id,timestamp\n"] + [f"u{u},b{b},{1500000000 + 100 * b}\n" for u in (1, 2) for b in range(4)])
BOOKS = "item_id,price\nb0,5.0\nb1,-2.0\nb2,cheap\nb3,7.5\n"  # line 3 negative, line 4 not a number


def _config(tmp_path, strict: bool = False, cache: bool = False) -> DataConfig:
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "books.csv").write_text(BOOKS)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": str(tmp_path / "books.csv")},
        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": "s", "item_title": None,
                    "item_author": None, "item_categories": None, "item_numeric": ["price"],
                    "item_count_columns": [], "item_nonnegative": ["price"]},
        "strict": strict, "min_user_interactions": 1, "min_item_interactions": 1,
        "cache_dir": str(tmp_path / "cache") if cache else None,
    })


def test_values_set_to_missing_are_counted_apart_from_dropped_rows(tmp_path):
    data, _ = prepare(_config(tmp_path))
    assert data.summary["dropped"] == {} and data.n_items == 4
    assert data.summary["set_to_missing"] == {"catalogue_unparsable_price": 1, "negative_price": 1}
    assert data.summary["set_to_missing_where"] == {
        "catalogue_unparsable_price": "on line 4 of books.csv (the header is line 1)",
        "negative_price": "on line 3 of books.csv (the header is line 1)"}


def test_the_not_a_number_warning_reaches_the_summary(tmp_path):
    data, _ = prepare(_config(tmp_path))
    (warning,) = [w for w in data.summary["warnings"] if "not a number" in w]
    assert str(tmp_path / "books.csv") in warning and "column 'price'" in warning and "'cheap'" in warning
    assert "line 4" in warning and "set to missing" in warning


def test_the_printed_table_says_set_to_missing_not_dropped(tmp_path):
    data, _ = prepare(_config(tmp_path))
    console = Console(record=True, width=200)
    print_summary(data.summary, console)
    text = console.export_text()
    assert "set to missing: negative_price" in text and "set to missing: catalogue_unparsable_price" in text
    assert "dropped: negative_price" not in text


def test_strict_makes_a_negative_value_an_error_that_says_set_to_missing(tmp_path):
    config = _config(tmp_path, strict=True)
    (tmp_path / "books.csv").write_text(BOOKS.replace("cheap", "6.0"))
    with pytest.raises(DataError, match=r"1 value would be set to missing \(negative_price\) on line 3 of books.csv"):
        prepare(config)


def test_a_strict_run_does_not_pass_on_a_cache_that_set_values_to_missing(tmp_path):
    lenient = _config(tmp_path, cache=True)
    (tmp_path / "books.csv").write_text(BOOKS.replace("cheap", "6.0"))
    assert prepare(lenient)[0].summary["set_to_missing"] == {"negative_price": 1}
    assert prepare(lenient)[0].summary["cache"]["hit"] is True
    with pytest.raises(DataError, match="negative_price"):
        prepare(lenient.model_copy(update={"strict": True}))
