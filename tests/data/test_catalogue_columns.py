"""The catalogue's columns: its book id may have its own name (`data.columns.catalogue_item`, e.g. Goodreads'
`book_id` beside a log's `item_id`), and a catalogue lacking mapped columns is told so in one error listing every
one, with the --set that maps each away (null, or [] for lists)."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw

LOG = "user_id,item_id,timestamp\nu1,1,1500000000\nu1,2,1500000100\nu1,3,1500000200\n"
GOODREADS = "book_id,title,authors\n1,One,Ann\n2,Two,Bob\n3,Three,Cy\n"
SETS = re.compile(r"--set (?:'[^']*'|\S+)")


def _config(tmp_path, books: str, **columns) -> DataConfig:
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "books.csv").write_text(books)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": str(tmp_path / "books.csv")},
        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": "s", "item_author": "authors",
                    "item_categories": None, "item_numeric": [], "item_count_columns": [], "item_nonnegative": [],
                    **columns},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def test_a_catalogue_id_column_of_its_own_is_read_with_catalogue_item(tmp_path):
    ledger = DropLedger()
    raw, _ = load_raw(_config(tmp_path, GOODREADS, catalogue_item="book_id"), ledger)
    assert raw.catalogue is not None and raw.catalogue["item_id"].to_list() == ["1", "2", "3"]
    assert raw.interactions.height == 3 and ledger.as_dict() == {}  # the log's item_id matched them all


def test_a_missing_catalogue_id_names_catalogue_item_and_the_id_like_column(tmp_path):
    with pytest.raises(DataError) as err:
        load_raw(_config(tmp_path, GOODREADS), DropLedger())
    problem, fix = str(err.value).split("Fix:")
    assert str(tmp_path / "books.csv") in problem and "no column 'item_id' (data.columns.item)" in problem
    assert "Did you mean 'book_id'?" in problem  # not 'title', which is spelt more like item_id
    assert "--set data.columns.catalogue_item=book_id" in fix and "data.columns.item stays the log's" in fix


def test_every_missing_mapped_column_is_named_in_one_error_with_the_sets_that_map_them_away(tmp_path):
    id_only = "item_id\n1\n2\n3\n"
    numeric = {"item_numeric": ["average_rating", "price"], "item_count_columns": [],
               "item_nonnegative": ["price"], "item_categories": "categories"}
    with pytest.raises(DataError) as err:
        load_raw(_config(tmp_path, id_only, **numeric), DropLedger())
    problem, fix = str(err.value).split("Fix:")
    assert "the items file lacks 5 of the columns the config maps to it" in problem
    for column, key in (("title", "item_title"), ("authors", "item_author"), ("categories", "item_categories"),
                        ("average_rating", "item_numeric"), ("price", "item_numeric")):
        assert f"'{column}' (data.columns.{key}" in problem
    assert "or null (lists: []) if you have none" in fix
    sets = dict(yaml.safe_load(shlex.split(s)[1].replace("=", ": ", 1)).popitem() for s in SETS.findall(fix))
    assert sets == {"data.columns.item_title": None, "data.columns.item_author": None,
                    "data.columns.item_categories": None, "data.columns.item_numeric": [],
                    "data.columns.item_nonnegative": []}
    # applied, they let the same catalogue through
    applied = {key.removeprefix("data.columns."): value for key, value in sets.items()}
    raw, _ = load_raw(_config(tmp_path, id_only, **{**numeric, **applied}), DropLedger())
    assert raw.catalogue is not None and raw.catalogue.height == 3


def test_one_missing_column_keeps_the_single_column_message(tmp_path):
    with pytest.raises(DataError) as err:
        load_raw(_config(tmp_path, "item_id,Title,authors\n1,One,Ann\n"), DropLedger())
    assert err.value.column == "title"
    assert "no column 'title' (data.columns.item_title). Did you mean 'Title'?" in str(err.value)
    assert "--set data.columns.item_title=null" in str(err.value).split("Fix:")[1]
