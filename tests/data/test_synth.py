"""Synthetic data: the real format, determinism, and the planted structure is really there."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import shared_data_path
from typer.testing import CliRunner

from booktower.config import load_config
from booktower.data.prepare import prepare
from booktower.data.synth import SynthConfig, generate, write_synthetic


@pytest.fixture(scope="module")
def tables():
    return generate(SynthConfig(n_users=600, n_books=400), seed=3)


def test_columns_match_the_amazon_2023_format(tables):
    books, users = tables
    folder = shared_data_path("amazon-2023-books-format")
    assert books.columns == pl.read_csv(folder / "books_trimmed.csv", n_rows=1).columns
    assert users.columns == pl.read_csv(folder / "users_trimmed.csv", n_rows=1).columns


def test_format_details(tables):
    books, users = tables
    titles = [json.loads(t) for t in books["title"].to_list()]
    assert all(len(t) == 1 and t[0] for t in titles)
    categories = [json.loads(c) for c in books["categories"].to_list()]
    assert all(c[0] == "Books" and len(c) == 3 for c in categories)
    assert books["parent_asin"].is_unique().all() and books["parent_asin"].str.len_chars().eq(10).all()
    assert users["userId"].str.len_chars().eq(28).all()
    assert users["timestamp"].min() > 1_400_000_000_000  # milliseconds
    assert users["parent_asin"].is_in(books["parent_asin"].implode()).all()
    assert not users.select(pl.struct("userId", "parent_asin").is_duplicated().any()).item()
    assert books["price"].null_count() > 0  # some prices are missing, as in the real dump


def test_same_seed_same_data_other_seed_other_data():
    a = generate(SynthConfig(n_users=50, n_books=40), seed=5)
    b = generate(SynthConfig(n_users=50, n_books=40), seed=5)
    c = generate(SynthConfig(n_users=50, n_books=40), seed=6)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert not a[1].equals(c[1])


def test_series_are_read_in_order(tables):
    books, users = tables
    title = books.select("parent_asin", pl.col("title").str.extract(r"\((.+) Book (\d+)\)", 1).alias("series"),
                         pl.col("title").str.extract(r"Book (\d+)\)", 1).cast(pl.Int64).alias("number"))
    reads = users.join(title.drop_nulls(), on="parent_asin").sort("userId", "timestamp")
    pairs = reads.join(reads, on=["userId", "series"], suffix="_b").filter(pl.col("number_b") == pl.col("number") + 1)
    in_order = (pairs["timestamp_b"] > pairs["timestamp"]).mean()
    assert pairs.height > 100 and in_order > 0.9


def test_popularity_is_heavy_tailed(tables):
    _, users = tables
    counts = np.sort(users.group_by("parent_asin").len()["len"].to_numpy())[::-1]
    top_tenth = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top_tenth > 0.3


def test_readers_stick_to_a_few_genres(tables):
    books, users = tables
    genre = books.select("parent_asin", pl.col("categories").str.json_decode(pl.List(pl.String)).list.get(1).alias("g"))
    share = (users.join(genre, on="parent_asin").group_by("userId", "g").len()
             .group_by("userId").agg((pl.col("len").max() / pl.col("len").sum()).alias("top")))
    # with 12 genres, uniform reading would give a top-genre share near 1/12
    assert share["top"].median() > 0.4


def test_default_demo_size_prepares(tmp_path, repo_root):
    written = write_synthetic(tmp_path, SynthConfig(), seed=0)
    assert 30_000 <= written["interactions"] <= 50_000
    cfg = load_config(repo_root / "configs" / "demo.yaml", [
        f"data.source.interactions={tmp_path / 'users.csv'}", f"data.source.items={tmp_path / 'books.csv'}",
        "data.cache_dir=null",
    ]).data
    data, _ = prepare(cfg)
    assert data.n_users > 1500 and data.n_items > 800
    assert data.summary["n_test"] == data.n_users
    assert {f.name for f in data.item_features.categorical} == {"category", "author"}


def test_cli_writes_both_files(tmp_path):
    from booktower.cli.app import app

    result = CliRunner().invoke(app, ["data", "synth", "--output-dir", str(tmp_path), "--users", "40",
                                      "--books", "30", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "books.csv").exists() and (tmp_path / "users.csv").exists()
    assert pl.read_csv(tmp_path / "books.csv").height == 30


def test_default_config_falls_back_to_the_bundled_sample(tmp_path, repo_root, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # no data/ here, and not the repository: the pkg: paths must still resolve
    cfg = load_config(repo_root / "configs" / "default.yaml", ["data.cache_dir=null"]).data
    data, _ = prepare(cfg)
    assert data.summary["warnings"] and "bundled sample" in data.summary["warnings"][0]
    assert data.n_users > 100 and data.n_items > 50


def test_a_path_the_user_chose_never_falls_back_to_the_sample(tmp_path, repo_root, monkeypatch):
    from booktower.data.errors import DataError

    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "my-logs" / "reads.csv"  # a typo'd or missing file of the user's own
    cfg = load_config(repo_root / "configs" / "default.yaml", ["data.cache_dir=null",
                                                                f"data.source.interactions={mine}"]).data
    with pytest.raises(DataError, match="the interactions file does not exist") as err:
        prepare(cfg)
    assert str(mine) in str(err.value)
