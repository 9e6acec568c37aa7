"""`index add` reads a new-books file the way the fitted model needs it: ids as training reads them, every feature
column the model uses under either of its names, and a warning (never a silent change) for what is missing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from booktower.data.errors import DataError
from booktower.serving.add_books import add_books
from booktower.serving.bundle import load_bundle


def _added_vector(bundle_dir: Path, tmp_path: Path, name: str, columns: dict) -> np.ndarray:
    """Add one book (id NEW) to a fresh copy of the bundle from a file with `columns`; its stored vector."""
    copy = shutil.copytree(bundle_dir, tmp_path / name)
    books = tmp_path / f"{name}.csv"
    pl.DataFrame({"item_id": ["NEW"], "title": ["the history of rome"], "author": ["writer 1"],
                  "categories": ["Books > g1"], **columns}).write_csv(books)
    add_books(copy, books)
    parts, _ = load_bundle(copy)
    return parts.item_vectors[parts.items.index("NEW")]


def test_a_categorical_book_column_is_read_under_either_name(language_bundle, tmp_path: Path) -> None:
    _, bundle = language_bundle
    raw = _added_vector(bundle, tmp_path, "raw", {"language": ["fre"], "price": ["7"]})
    prefixed = _added_vector(bundle, tmp_path, "prefixed", {"cat:language": ["fre"], "num:price": ["7"]})
    other = _added_vector(bundle, tmp_path, "other", {"language": ["ger"], "price": ["7"]})
    np.testing.assert_array_equal(raw, prefixed)
    assert not np.allclose(raw, other), "the language reaches the item tower"


def test_missing_model_features_are_filled_and_named_in_a_warning(language_bundle, tmp_path: Path, caplog) -> None:
    _, bundle = language_bundle
    with caplog.at_level(logging.WARNING, logger="booktower"):
        lacking = _added_vector(bundle, tmp_path, "lacking", {})
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "cat:language" in warning and "num:price" in warning and "training median" in warning
    empty = _added_vector(bundle, tmp_path, "empty", {"language": [None], "price": [None]})
    np.testing.assert_array_equal(lacking, empty)  # filled exactly as a training book without the values


def test_an_unprefixed_numeric_column_is_not_ignored(trained, tmp_path: Path) -> None:
    """The toy model reads num:price; a file's `price` column is the same feature."""
    bundle = trained[2]
    plain = _added_vector(bundle, tmp_path, "plain", {"price": [29.0]})
    prefixed = _added_vector(bundle, tmp_path, "prefixed", {"num:price": [29.0]})
    without = _added_vector(bundle, tmp_path, "without", {})
    np.testing.assert_array_equal(plain, prefixed)
    assert not np.allclose(plain, without)


def test_a_value_that_is_not_a_number_is_set_to_missing_and_named_as_prepare_does(trained, tmp_path: Path,
                                                                                   caplog) -> None:
    """The catalogue `prepare` accepted (it set such values to missing) must be accepted here too, for
    `--skip-existing` to add the books it pruned."""
    bundle = trained[2]
    with caplog.at_level("WARNING", logger="booktower"):
        cheap = _added_vector(bundle, tmp_path, "cheap", {"price": ["cheap"]})
        infinite = _added_vector(bundle, tmp_path, "inf", {"price": ["inf"]})
    without = _added_vector(bundle, tmp_path, "without", {})
    np.testing.assert_array_equal(cheap, without)
    np.testing.assert_array_equal(infinite, without)
    assert "column 'price': 1 value is not a number (e.g. ['cheap'], on line 2): set to missing" in caplog.text


def test_ids_are_stripped_as_training_ids_are(trained, tmp_path: Path) -> None:
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": [" NEW040 ", "NEW041\t"], "title": ["a", "b"]}).write_csv(books)
    add_books(bundle, books)
    assert load_bundle(bundle)[0].items.ids.to_list()[-2:] == ["NEW040", "NEW041"]
    pl.DataFrame({"item_id": ["  NEW040"], "title": ["again"]}).write_csv(books)
    with pytest.raises(DataError, match="already in the bundle"):
        add_books(bundle, books)


@pytest.mark.parametrize("content", ["", "item_id,title,author,categories\n"])
def test_an_empty_books_file_names_the_option_not_a_config(trained, tmp_path: Path, content: str) -> None:
    books = tmp_path / "new.csv"
    books.write_text(content)
    with pytest.raises(DataError) as caught:
        add_books(shutil.copytree(trained[2], tmp_path / "b"), books)
    message = str(caught.value)
    assert "--books" in message and "config" not in message and str(books) in message, message


def _bundle_with_catalogue_columns(trained, tmp_path: Path) -> Path:
    """The toy bundle as exported from a run whose catalogue named its columns book_id / writer / shelves, with
    a non-negative price."""
    from booktower.config.serving import IndexConfig
    from booktower.serving.export import export_parts
    from booktower.serving.manifest import CatalogueColumns

    parts, _ = load_bundle(trained[2])
    columns = CatalogueColumns(item="book_id", author="writer", categories="shelves", nonnegative=["price"])
    export_parts(parts, tmp_path / "b", IndexConfig(kind="exact"), np.random.default_rng(0), catalogue=columns)
    return tmp_path / "b"


def test_a_new_books_file_may_use_the_training_catalogues_column_names(trained, tmp_path: Path, caplog) -> None:
    bundle = _bundle_with_catalogue_columns(trained, tmp_path)
    ours = {"item_id": ["A"], "title": ["dragons"], "author": ["writer 3"], "categories": ["Books|fantasy"]}
    theirs = {"book_id": ["B"], "title": ["dragons"], "writer": ["writer 3"], "shelves": ["Books|fantasy"]}
    for name, columns in (("ours", ours), ("theirs", theirs)):
        pl.DataFrame({**columns, "price": [9.0]}).write_csv(tmp_path / f"{name}.csv")
    with caplog.at_level(logging.WARNING, logger="booktower"):
        add_books(bundle, tmp_path / "ours.csv")
        add_books(bundle, tmp_path / "theirs.csv")
    assert not [r for r in caplog.records if "lacks" in r.getMessage()], "author and categories were found"
    parts, _ = load_bundle(bundle)
    vectors = parts.item_vectors[[parts.items.index("A"), parts.items.index("B")]]
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert parts.metadata.filter(pl.col("item_id") == "B")["author"].item() == "writer 3"
    pl.DataFrame({"isbn": ["C"], "title": ["x"]}).write_csv(tmp_path / "neither.csv")
    with pytest.raises(DataError, match="no id column 'book_id' or 'item_id'"):
        add_books(bundle, tmp_path / "neither.csv")


def test_a_negative_value_of_a_non_negative_column_is_missing_as_in_training(trained, tmp_path: Path, caplog) -> None:
    bundle = _bundle_with_catalogue_columns(trained, tmp_path)
    pl.DataFrame({"item_id": ["NEG", "NULL"], "title": ["a tale", "a tale"], "price": [-4.0, None]}).write_csv(
        tmp_path / "new.csv")
    with caplog.at_level(logging.WARNING, logger="booktower"):
        add_books(bundle, tmp_path / "new.csv")
    assert "1 book has a negative price (e.g. ['NEG'])" in caplog.text
    parts, _ = load_bundle(bundle)
    np.testing.assert_array_equal(parts.item_vectors[parts.items.index("NEG")],
                                  parts.item_vectors[parts.items.index("NULL")])


def test_skip_existing_adds_only_the_books_the_bundle_lacks(trained, tmp_path: Path, caplog) -> None:
    """The whole catalogue, pruned books included, is a valid file for `index add --skip-existing`."""
    from booktower.serving.service import Recommender

    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    held = data.items.ids[:5].to_list()
    catalogue = tmp_path / "catalogue.csv"
    pl.DataFrame({"item_id": [*held, "PRUNED-1", "PRUNED-2"], "title": ["t"] * 7, "author": ["a"] * 7,
                  "categories": ["Books"] * 7}).write_csv(catalogue)
    with pytest.raises(DataError, match="5 new books are already in the bundle.*--skip-existing"):
        add_books(bundle, catalogue)
    with caplog.at_level(logging.WARNING):
        manifest = add_books(bundle, catalogue, skip_existing=True)
    assert manifest["n_items"] == data.n_items + 2 and manifest["added_books"] == 2
    assert "5 of its 7 books are already in the bundle and were skipped" in caplog.text
    np.testing.assert_array_equal(load_bundle(bundle)[0].item_vectors[: data.n_items],
                                  load_bundle(directory)[0].item_vectors), "held books keep their trained vectors"
    again = add_books(bundle, catalogue, skip_existing=True)
    assert again["n_items"] == manifest["n_items"] and "nothing is left to add" in caplog.text
    assert Recommender.from_bundle(bundle).unknown_items([held[0], "PRUNED-1"]) == []


def test_books_a_model_cannot_tell_apart_are_added_with_a_warning(make_catalogue_bundle, tmp_path_factory, tmp_path,
                                                                  caplog) -> None:
    _, bundle, _ = make_catalogue_bundle(tmp_path_factory.mktemp("ids-only") / "b", {"item": {"use_features": False}})
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["N1", "N2"], "title": ["dragons", "rome"], "author": ["a", "b"]}).write_csv(books)
    with caplog.at_level(logging.WARNING, logger="booktower"):
        add_books(shutil.copytree(bundle, tmp_path / "b"), books)
    assert "the 2 new books all got the same vector" in caplog.text
    caplog.clear()
    _, with_features, _ = make_catalogue_bundle(tmp_path_factory.mktemp("features") / "b", {})
    with caplog.at_level(logging.WARNING, logger="booktower"):
        add_books(shutil.copytree(with_features, tmp_path / "c"), books)
    assert "same vector" not in caplog.text
