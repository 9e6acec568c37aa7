"""Authors are read as the catalogue writes them: "Surname, Forename" names stay whole, comma lists of full names
split, and books added to a served bundle are split by the rule saved with the model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.features import FeatureSpec
from booktower.data.featurize import fit_feature_spec, transform_items
from booktower.data.ingest import RawData
from booktower.data.prepare import prepare_from_raw
from booktower.data.textparse import AuthorSplit, fit_author_split, split_authors

CONFIG = DataConfig.model_validate({
    "min_user_interactions": 1, "min_item_interactions": 1,
    "columns": {"item_numeric": [], "item_count_columns": [], "item_nonnegative": []}})


def _raw(authors: list[str]) -> RawData:
    """Three readers who read every book in turn, then two without an author (held out for validation and test),
    so every book with an author is in training."""
    authors = [*authors, "", ""]
    n = len(authors)
    rows = [(f"u{u}", f"b{i}", i + 1) for u in range(3) for i in range(n)]
    interactions = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
                                orient="row").with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))
    catalogue = pl.DataFrame({"item_id": [f"b{i}" for i in range(n)], "title": [f"book {i}" for i in range(n)],
                              "author": authors, "categories": [["Books"]] * n})
    return RawData(interactions, catalogue, None, [])


def _author_levels(authors: list[str]) -> list[str]:
    data = prepare_from_raw(_raw(authors), CONFIG, DropLedger())
    field = next(f for f in data.item_features.categorical if f.name == "author")
    return field.levels[1:]


def _split(authors: list[str]) -> list[list[str]]:
    series = pl.Series("author", authors)
    return split_authors(series, fit_author_split(series)).to_list()


def test_a_surname_forename_catalogue_keeps_each_name_whole():
    levels = _author_levels(["Green, John", "Grisham, John", "Le Guin, Ursula K.", "Tolkien, J.R.R."])
    assert sorted(levels) == ["Green, John", "Grisham, John", "Le Guin, Ursula K.", "Tolkien, J.R.R."]
    assert "John" not in levels  # John Green and John Grisham share no author feature


def test_comma_lists_of_full_names_split_as_before():
    authors = ["J.K. Rowling, Mary GrandPré", "Stieg Larsson, Reg Keeland", "Homer, Robert Fagles", "Suzanne Collins"]
    before = pl.Series(authors).str.split(",").list.eval(pl.element().str.strip_chars()).to_list()
    assert _split(authors) == before


def test_a_name_suffix_is_not_an_author_and_semicolons_ampersands_and_and_separate():
    assert _split(["Martin Luther King, Jr., Coretta Scott King", "Alan Moore and Dave Gibbons",
                   "Neil Gaiman & Terry Pratchett"]) == [
        ["Martin Luther King, Jr.", "Coretta Scott King"], ["Alan Moore", "Dave Gibbons"],
        ["Neil Gaiman", "Terry Pratchett"]]
    assert _split(["Green, John; Levithan, David", "Collins, Suzanne", "", None]) == [
        ["Green, John", "Levithan, David"], ["Collins, Suzanne"], [], []]


def test_name_suffixes_do_not_make_a_comma_list_look_like_surname_forename():
    assert _split(["Martin Luther King, Jr.", "Harry Connick, Jr.", "J.K. Rowling, Mary GrandPré"]) == [
        ["Martin Luther King, Jr."], ["Harry Connick, Jr."], ["J.K. Rowling", "Mary GrandPré"]]


def test_an_explicit_separator_is_the_only_one():
    series = pl.Series("author", ["Green, John | Levithan, David", "Simon and Garfunkel"])
    rule = fit_author_split(series, "|")
    assert split_authors(series, rule).to_list() == [["Green, John", "Levithan, David"], ["Simon and Garfunkel"]]


def test_a_book_added_to_a_bundle_is_split_by_the_saved_rule():
    data = prepare_from_raw(_raw(["Green, John", "Grisham, John", "Collins, Suzanne"]), CONFIG, DropLedger())
    served = FeatureSpec.from_json(json.loads(json.dumps(data.feature_spec.to_json())))  # as a bundle stores it
    new = pl.DataFrame({"item_id": ["n1"], "title": ["new"], "author": ["Green, John"], "categories": [["Books"]]})
    added = next(f for f in transform_items(served, new).categorical if f.name == "author")
    trained = next(f for f in data.item_features.categorical if f.name == "author")
    first_book = trained.bags.values[trained.bags.offsets[0]:trained.bags.offsets[1]]
    np.testing.assert_array_equal(added.bags.values, first_book)
    assert added.levels[int(added.bags.values[0])] == "Green, John"


def test_a_spec_saved_before_the_rule_existed_still_splits_on_every_comma():
    data = prepare_from_raw(_raw(["A B, C D", "E F"]), CONFIG, DropLedger())
    saved = data.feature_spec.to_json()
    del saved["author_split"]
    assert FeatureSpec.from_json(saved).author_split == AuthorSplit([","], keep_suffixes=False)
    legacy = split_authors(pl.Series(["King, Jr., Green, John"]), FeatureSpec.from_json(saved).author_split)
    assert legacy.to_list() == [["King", "Jr.", "Green", "John"]]


def test_many_one_word_authors_are_warned_about_with_examples_and_the_fix(caplog):
    # Several "Surname, Forename" authors a row, written with commas only: no rule can tell them apart.
    raw = _raw(["Green, John, Levithan, David", "Grisham, John, Patterson, James", "Lee, Harper, Capote, Truman"])
    warnings: list[str] = []
    fit_feature_spec(raw.catalogue, np.ones(5), {}, None, np.ones(0, dtype=bool), CONFIG.features, [], [], [], [],
                     warnings=warnings)
    assert len(warnings) == 1
    assert "11 of the 11 authors" in warnings[0] and "'Green', 'John'" in warnings[0]
    assert "data.features.author_separator" in warnings[0]
    assert any("data.features.author_separator" in r.getMessage() for r in caplog.records)


def test_full_names_are_not_warned_about():
    warnings: list[str] = []
    raw = _raw(["J.K. Rowling, Mary GrandPré", "Homer, Robert Fagles", "Plato", "Suzanne Collins"])
    fit_feature_spec(raw.catalogue, np.ones(6), {}, None, np.ones(0, dtype=bool), CONFIG.features, [], [], [], [],
                     warnings=warnings)
    assert warnings == []


def test_the_config_key_sets_the_separator_for_prepare_and_its_warning_reaches_the_summary():
    separated = CONFIG.model_copy(update={"features": CONFIG.features.model_copy(update={"author_separator": "|"})})
    data = prepare_from_raw(_raw(["Green, John | Levithan, David", "Simon and Garfunkel"]), separated, DropLedger())
    field = next(f for f in data.item_features.categorical if f.name == "author")
    assert sorted(field.levels[1:]) == ["Green, John", "Levithan, David", "Simon and Garfunkel"]
    crowded = prepare_from_raw(_raw(["Green, John, Levithan, David", "Grisham, John, Patterson, James",
                                     "Lee, Harper, Capote, Truman"]), CONFIG, DropLedger())
    assert any("data.features.author_separator" in w for w in crowded.summary["warnings"])


def test_an_empty_author_separator_is_refused_with_the_quoting_hint():
    import pytest

    from booktower.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"author_separator is empty: YAML reads a bare \|"):
        load_config(None, ["data.features.author_separator=|"])
