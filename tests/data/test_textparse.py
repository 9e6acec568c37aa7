"""Text-ish metadata: lists of categories and titles as they come in real files, mixed forms in one column."""

from __future__ import annotations

import polars as pl
import pytest

from booktower.data.textparse import parse_list_column, parse_text_column


@pytest.mark.parametrize("values, expected", [
    (['["Books", "Fiction"]', "", None, "[]"], [["Books", "Fiction"], [], [], []]),  # JSON beside empty cells
    (['["Books"]', "Books > History", "poetry|verse"], [["Books"], ["Books", "History"], ["poetry", "verse"]]),
    (["[Books, Fiction]", '["A", "B"]'], [["Books", "Fiction"], ["A", "B"]]),  # not JSON: split on commas
    (["['x', 'y']"], [["x", "y"]]),  # Python-style quotes
    (["[1, 2]"], [["1", "2"]]),
    ([" Books >  Fiction "], [["Books", "Fiction"]]),
])
def test_category_cells_of_every_form_in_one_column(values, expected):
    assert parse_list_column(pl.Series("categories", values, dtype=pl.String)).to_list() == expected


def test_a_list_column_is_only_cleaned():
    lists = pl.Series("categories", [[" Books ", "", "Fiction"], None], dtype=pl.List(pl.String))
    assert parse_list_column(lists).to_list() == [["Books", "Fiction"], []]


def test_titles_that_are_json_lists_are_joined_and_others_kept():
    titles = pl.Series("title", ["The Hobbit", '["Chaucer", "Tales"]', "[Untitled] Poems", None, '["A"]'])
    assert parse_text_column(titles).to_list() == ["The Hobbit", "Chaucer Tales", "[Untitled] Poems", "", "A"]


def test_a_catalogue_mixing_forms_loads(write_file):
    from booktower.config.data import DataConfig
    from booktower.data.errors import DropLedger
    from booktower.data.ingest import load_raw

    users = write_file("users.csv", "parent_asin,userId,timestamp\nB1,U1,1600000000000\nB2,U1,1600000001000\n")
    books = write_file("books.csv", (
        "title,author,average_rating,rating_number,price,categories,parent_asin\n"
        '"[""A Book""]",Ann,4.5,10,5.0,"[""Books"", ""Fiction""]",B1\n'
        "Plain Title,Bob,4.0,3,7.5,,B2\n"))
    config = DataConfig.model_validate({"source": {"interactions": str(users), "items": str(books)},
                                        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None})
    raw, _ = load_raw(config, DropLedger())
    by_id = {row["item_id"]: row for row in raw.catalogue.iter_rows(named=True)}
    assert by_id["B1"]["title"] == "A Book" and by_id["B1"]["categories"] == ["Books", "Fiction"]
    assert by_id["B2"]["title"] == "Plain Title" and by_id["B2"]["categories"] == []
