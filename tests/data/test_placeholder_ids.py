"""A placeholder where an id belongs (`NULL`, `null`, `NA`, `N/A`, `nan`, `None`) is no id: its row is dropped and
counted as placeholder_user_id / placeholder_item_id, with where it is and a warning naming the values. Kept, all
such rows would merge into one reader (or book) called `NULL`."""

from __future__ import annotations

import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare


def _config(tmp_path, body: str, strict: bool = False) -> DataConfig:
    (tmp_path / "log4.csv").write_text("user_id,item_id,timestamp\n" + body)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log4.csv"), "items": None},
        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": "s"},
        "strict": strict, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


REAL = "u1,1,1500000000\nu1,2,1500000100\nu1,3,1500000200\n"


@pytest.mark.parametrize("placeholder", ["NULL", "null", "NA", "N/A", "nan", "NaN", "None"])
def test_a_placeholder_reader_id_drops_its_rows(tmp_path, placeholder):
    body = REAL + "".join(f"{placeholder},{i},150000{i}000\n" for i in (1, 2, 3))
    ledger = DropLedger()
    raw, warnings = load_raw(_config(tmp_path, body), ledger)
    assert ledger.as_dict() == {"placeholder_user_id": 3}
    assert ledger.notes["placeholder_user_id"] == "on lines 5, 6 and 7 of log4.csv (the header is line 1)"
    assert raw.interactions["user_id"].unique().to_list() == ["u1"]
    (warning,) = warnings
    for words in (str(tmp_path / "log4.csv"), "column 'user_id'", repr(placeholder), "lines 5, 6 and 7",
                  "placeholder_user_id", "Fix:"):
        assert words in warning, words


def test_a_placeholder_book_id_drops_its_row_and_names_the_values(tmp_path):
    ledger = DropLedger()
    _, warnings = load_raw(_config(tmp_path, REAL + "u1,N/A,1500000300\nu1,null,1500000400\n"), ledger)
    assert ledger.as_dict() == {"placeholder_item_id": 2}
    assert "('N/A', 'null')" in warnings[0] and "column 'item_id'" in warnings[0]


def test_an_empty_id_is_still_a_missing_id_not_a_placeholder(tmp_path):
    ledger = DropLedger()
    load_raw(_config(tmp_path, REAL + ",4,1500000300\n"), ledger)
    assert ledger.as_dict() == {"missing_user_id": 1}


def test_the_warning_reaches_the_summary(tmp_path):
    data, _ = prepare(_config(tmp_path, REAL + "NULL,1,1500000000\nNULL,2,1500000100\n"))
    assert data.n_users == 1 and data.summary["dropped"] == {"placeholder_user_id": 2}
    assert any("'NULL'" in w for w in data.summary["warnings"])


def test_strict_makes_a_placeholder_id_an_error(tmp_path):
    with pytest.raises(DataError, match=r"placeholder_user_id\) on line 5 of log4.csv") as err:
        load_raw(_config(tmp_path, REAL + "NULL,1,1500000000\n", strict=True), DropLedger(strict=True))
    assert err.value.column == "user_id" and "real id" in str(err.value).split("Fix:")[1]




def test_a_placeholder_id_in_the_catalogue_is_no_book(tmp_path):
    config = _config(tmp_path, REAL)
    (tmp_path / "books.csv").write_text("item_id,title\n1,One\nNULL,Nothing\n2,Two\nn/a,Nobody\n3,Three\n")
    source = config.source.model_copy(update={"items": tmp_path / "books.csv"})
    columns = config.columns.model_copy(update={"item_author": None, "item_categories": None, "item_numeric": [],
                                                "item_count_columns": [], "item_nonnegative": []})
    ledger = DropLedger()
    raw, _ = load_raw(config.model_copy(update={"source": source, "columns": columns}), ledger)
    assert raw.catalogue["item_id"].to_list() == ["1", "2", "3"]
    assert ledger.as_dict() == {"catalogue_placeholder_item_id": 2}
    assert ledger.notes["catalogue_placeholder_item_id"] == "on lines 3 and 5 of books.csv (the header is line 1)"
