"""Features are fitted on the training split only; a second prepare reuses the cache and says so."""

from __future__ import annotations

import numpy as np
import polars as pl
from typer.testing import CliRunner

from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.ingest import RawData
from booktower.data.prepare import prepare, prepare_from_raw
from booktower.data.synth import SynthConfig, write_synthetic
from booktower.data.types import SideFeatures

CONFIG = DataConfig.model_validate({
    "min_user_interactions": 1, "min_item_interactions": 1,
    "columns": {"item_numeric": ["price"], "item_count_columns": [], "item_nonnegative": ["price"]},
    "features": {"categories_top_k": 3, "authors_top_k": 2},
})


def _raw(test_item_of_u0: str, test_time_of_u0: int) -> RawData:
    rows = [("u0", "b0", 1), ("u0", "b1", 2), ("u0", "b2", 3), ("u0", test_item_of_u0, test_time_of_u0),
            ("u1", "b0", 1), ("u1", "b2", 2), ("u1", "b3", 3), ("u1", "b1", 4),
            ("u2", "b3", 1), ("u2", "b4", 2), ("u2", "b0", 3), ("u2", "b5", 4)]
    interactions = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
                                orient="row").with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))
    catalogue = pl.DataFrame({
        "item_id": [f"b{i}" for i in range(6)],
        "title": ["red fox", "blue whale", "green tree frog", "red sea", "a very long title of words", "x"],
        "author": ["A", "A", "B", "C", "D", "E"],
        "categories": [["Books", "g1"], ["Books", "g1"], ["Books", "g2"], ["Books", "g3"], ["Books", "g4"], ["Books", "g4"]],
        "num:price": [1.0, 2.0, 3.0, 40.0, 500.0, 6000.0],
    })
    return RawData(interactions, catalogue, None, [])


def _same(a: SideFeatures, b: SideFeatures) -> None:
    np.testing.assert_array_equal(a.numeric, b.numeric)
    assert a.numeric_names == b.numeric_names
    for fa, fb in zip(a.categorical, b.categorical, strict=True):
        assert fa.levels == fb.levels
        np.testing.assert_array_equal(fa.bags.offsets, fb.bags.offsets)
        np.testing.assert_array_equal(fa.bags.values, fb.bags.values)


def test_changing_a_test_row_changes_no_feature():
    # u0's test book moves from b5 (a rare, expensive book) to b4, and later in time.
    base = prepare_from_raw(_raw("b5", 10), CONFIG, DropLedger())
    changed = prepare_from_raw(_raw("b4", 99), CONFIG, DropLedger())
    assert base.items.ids.to_list() == changed.items.ids.to_list()
    assert base.items.decode(base.split.test.item[:1]) != changed.items.decode(changed.split.test.item[:1])
    _same(base.item_features, changed.item_features)
    _same(base.user_features, changed.user_features)
    np.testing.assert_array_equal(base.item_category, changed.item_category)


def test_statistics_ignore_items_seen_only_outside_train():
    data = prepare_from_raw(_raw("b5", 10), CONFIG, DropLedger())
    # b5 appears only in test: it gets an index, but its category/author levels are not fitted from it
    category = {f.name: f for f in data.item_features.categorical}["category"]
    author = {f.name: f for f in data.item_features.categorical}["author"]
    assert "E" not in author.levels
    b5 = data.items.index("b5")
    popularity = data.item_features.numeric[:, data.item_features.numeric_names.index("train_popularity")]
    assert popularity[b5] < popularity[[i for i in range(data.n_items) if i != b5]].min()  # zero train reads
    assert len(category.levels) <= 4  # <other> + top 3


def test_second_prepare_is_a_cache_hit(tmp_path, monkeypatch):
    write_synthetic(tmp_path / "d", SynthConfig(n_users=60, n_books=40, mean_history=12), seed=1)
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "d" / "users.csv"), "items": str(tmp_path / "d" / "books.csv")},
        "cache_dir": str(tmp_path / "cache"), "min_user_interactions": 2, "min_item_interactions": 2,
    })
    first, _ = prepare(cfg)
    second, _ = prepare(cfg)
    assert first.summary["cache"]["hit"] is False and second.summary["cache"]["hit"] is True
    np.testing.assert_array_equal(first.split.train.item, second.split.train.item)
    assert first.items == second.items
    # a different data config is a different cache entry
    third, _ = prepare(cfg.model_copy(update={"min_item_interactions": 3}))
    assert third.summary["cache"]["hit"] is False

    from booktower.cli.app import app

    monkeypatch.chdir(tmp_path)
    args = ["prepare", "-o", str(tmp_path / "run"),
            "--set", f"data.source.interactions={tmp_path / 'd' / 'users.csv'}",
            "--set", f"data.source.items={tmp_path / 'd' / 'books.csv'}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}",
            "--set", "data.min_user_interactions=2", "--set", "data.min_item_interactions=2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reused" in result.output


def test_a_relative_and_an_absolute_path_to_the_same_files_share_a_cache_entry(tmp_path, monkeypatch):
    """`evaluate --run` from another folder reads a run's data by absolute path: it must find the entry that
    training wrote from the relative one, not prepare again."""
    write_synthetic(tmp_path / "d", SynthConfig(n_users=60, n_books=40, mean_history=12), seed=1)
    monkeypatch.chdir(tmp_path)
    relative = DataConfig.model_validate({
        "source": {"interactions": "d/users.csv", "items": "d/books.csv"}, "cache_dir": str(tmp_path / "cache"),
        "min_user_interactions": 2, "min_item_interactions": 2})
    absolute = relative.model_copy(update={"source": relative.source.model_copy(update={
        "interactions": tmp_path / "d" / "users.csv", "items": tmp_path / "d" / "books.csv"})})
    assert prepare(relative)[0].summary["cache"]["hit"] is False
    monkeypatch.chdir(tmp_path / "d")
    assert prepare(absolute)[0].summary["cache"]["hit"] is True
