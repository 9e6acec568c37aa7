"""Export: a bundle serves production, so every known interaction shapes the reader and is filtered as seen; the
export says how many catalogue books the bundle lacks and how to add them."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from booktower.config.data import ColumnMapping, DataConfig, SourceConfig
from booktower.config.serving import IndexConfig
from booktower.serving.export import export_run
from booktower.serving.service import Recommender


def test_a_readers_most_recent_book_is_never_served_back(trained) -> None:
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    test = data.split.test
    assert len(test) > 0
    for user in np.unique(test.user):
        served = {r.item_id for r in rec.for_user(data.users.ids[int(user)], k=data.n_items)}
        held_out = set(data.items.decode(test.item[test.user == user]))
        assert not served & held_out


def test_the_export_says_how_many_catalogue_books_were_pruned(trained, tmp_path: Path, monkeypatch, caplog) -> None:
    data, model, _, _ = trained
    pruned = replace(data, summary={**data.summary, "catalogue_items": data.n_items + 60})
    columns = ColumnMapping(item="book_id", item_author="authors", item_nonnegative=["price"])
    gone = SourceConfig(interactions=tmp_path / "moved" / "log.csv", items=None)
    run = SimpleNamespace(config=SimpleNamespace(serving=SimpleNamespace(index=IndexConfig(kind="exact")), seed=0,
                                                 data=DataConfig(columns=columns, source=gone)),
                          data=pruned, model=model)
    monkeypatch.setattr("booktower.training.run.load_run", lambda run_dir: run)
    with caplog.at_level(logging.INFO, logger="booktower"):
        manifest = export_run(tmp_path / "run", tmp_path / "bundle")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{data.n_items} of the catalogue's {data.n_items + 60} books" in said and "booktower index add" in said
    # the log moved since training: the bundle cannot know its readers' reads of the pruned books, and says so
    assert "could not be read again" in said and "outside_reads.parquet" not in manifest["files"]
    assert manifest["source"]["catalogue_items"] == data.n_items + 60
    # what `index add` needs to read a new-books file shaped like the catalogue
    assert manifest["catalogue"] == {"item": "book_id", "title": "title", "author": "authors",
                                     "categories": "categories", "nonnegative": ["price"]}


def test_the_pruning_note_without_a_catalogue_count() -> None:
    from booktower.serving.export import pruned_books_note

    assert "pruned" in pruned_books_note(40, None) and "index add" in pruned_books_note(40, None)
    assert "pruned" not in pruned_books_note(40, 40)


def test_re_exporting_over_a_bundle_with_added_books_says_they_go(trained, tmp_path: Path, monkeypatch, caplog) -> None:
    import shutil

    import polars as pl

    from booktower.serving.add_books import add_books

    data, model, bundle, _ = trained
    copy = shutil.copytree(bundle, tmp_path / "b")
    pl.DataFrame({"item_id": ["N1", "N2"], "title": ["a", "b"]}).write_csv(tmp_path / "new.csv")
    add_books(copy, tmp_path / "new.csv")
    run = SimpleNamespace(config=SimpleNamespace(serving=SimpleNamespace(index=IndexConfig(kind="exact")), seed=0,
                                                 data=DataConfig(source=SourceConfig(
                                                     interactions=tmp_path / "moved.csv", items=None))),
                          data=data, model=model)
    monkeypatch.setattr("booktower.training.run.load_run", lambda run_dir: run)
    with caplog.at_level(logging.WARNING, logger="booktower"):
        manifest = export_run(tmp_path / "run", copy)
    assert manifest["n_items"] == data.n_items
    assert "held 2 books added with `booktower index add`" in caplog.text


def test_the_bundle_remembers_the_catalogues_own_id_column() -> None:
    from booktower.serving.export import catalogue_columns

    assert catalogue_columns(ColumnMapping(item="item_id", catalogue_item="book_id")).item == "book_id"
    assert catalogue_columns(ColumnMapping(item="item_id")).item == "item_id"
