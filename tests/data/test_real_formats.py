"""Real files load through the column mapping: Goodreads catalogue, Amazon 2023 rows, MovieLens-100K, JSON lines."""

from __future__ import annotations

import gzip

import polars as pl
import pytest
from conftest import shared_data_path

from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare, prepare_from_raw


def test_goodbooks_catalogue_loads_with_an_item_id_mapping(tmp_path):
    books = shared_data_path("goodbooks-10k-catalog", "books.csv")
    # A tiny log that refers to Goodreads book ids (the catalogue has no interactions of its own).
    log = "book_id,reader,when\n" + "".join(f"{b},r{u},{1500000000 + 86400 * (u * 7 + b)}\n"
                                             for u in range(6) for b in (1, 2, 3, 4, 5, 27))
    (tmp_path / "log.csv").write_text(log)
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": str(books)},
        "columns": {
            "user": "reader", "item": "book_id", "timestamp": "when", "timestamp_unit": "s",
            "item_title": "title", "item_author": "authors", "item_categories": None,
            "item_numeric": ["average_rating", "ratings_count", "original_publication_year"],
            "item_count_columns": ["ratings_count"], "item_nonnegative": ["ratings_count"],
            "item_categorical": ["language_code"],
        },
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    ledger = DropLedger()
    raw, _ = load_raw(cfg, ledger)
    catalogue = raw.catalogue
    assert catalogue is not None and catalogue.height == 10_000
    assert catalogue["item_id"].n_unique() == 10_000
    by_id = dict(zip(catalogue["item_id"].to_list(), catalogue["title"].to_list()))
    assert by_id["1"] == "The Hunger Games (The Hunger Games, #1)"  # commas inside a quoted field
    assert any("é" in t or "ö" in t for t in catalogue["title"].to_list())  # unicode survives
    assert catalogue["num:original_publication_year"].null_count() > 0  # missing values stay missing
    assert "J.K. Rowling, Mary GrandPré" in catalogue["author"].to_list()
    data = prepare_from_raw(raw, cfg, ledger)
    assert data.n_items == 6
    assert {f.name for f in data.item_features.categorical} >= {"author", "language_code"}


def test_amazon_2023_format_rows_parse(tmp_path):
    folder = shared_data_path("amazon-2023-books-format")
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(folder / "users_trimmed.csv"), "items": str(folder / "books_trimmed.csv")},
        "min_user_interactions": 1, "min_item_interactions": 1, "drop_items_missing_from_catalogue": False,
        "cache_dir": None,
    })
    raw, _ = load_raw(cfg, DropLedger())
    catalogue = raw.catalogue
    assert catalogue is not None and catalogue.height == 10
    row = catalogue.filter(pl.col("item_id") == "0701169850").row(0, named=True)
    assert row["title"] == "Chaucer"  # JSON-list string -> plain text
    assert row["categories"] == ["Books", "Literature & Fiction", "History & Criticism"]
    assert row["author"] == "Peter Ackroyd" and row["num:price"] == 8.23
    parker = catalogue.filter(pl.col("item_id") == "B00KFOP3RG").row(0, named=True)
    assert parker["categories"][1] == "Mystery, Thriller & Suspense"  # a comma inside a JSON element
    assert raw.interactions.height == 10
    assert raw.interactions["timestamp"].to_list()[0] == 1642399598  # ms -> s


def test_movielens_builds_user_and_item_features(repo_root, monkeypatch):
    shared_data_path("movielens-100k", "u.data")
    monkeypatch.chdir(repo_root)
    from booktower.config import load_config

    cfg = load_config(repo_root / "configs" / "movielens-100k.yaml", ["data.cache_dir=null"]).data
    data, _ = prepare(cfg)
    assert (data.n_users, data.n_items, data.summary["n_interactions"]) == (943, 1349, 99_287)
    user_fields = {f.name: f for f in data.user_features.categorical}
    assert set(user_fields) == {"gender", "occupation"}
    assert {"F", "M"} <= set(user_fields["gender"].levels)
    assert "age" in data.user_features.numeric_names
    genre = {f.name: f for f in data.item_features.categorical}["category"]
    assert {"Action", "Comedy", "Drama"} <= set(genre.levels)
    assert "unknown" not in genre.levels
    assert len(data.category_names) >= 17  # CAL labels: first genre of each film


def test_amazon2023_jsonl_format_reads_the_raw_files(tmp_path, fixtures_dir):
    for name in ("Books.jsonl", "meta_Books.jsonl"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress((fixtures_dir / "amazon2023" / name).read_bytes()))
    cfg = DataConfig.model_validate({
        "source": {"format": "amazon2023-jsonl", "interactions": str(tmp_path / "Books.jsonl.gz"),
                   "items": str(tmp_path / "meta_Books.jsonl.gz")},
        "columns": {"user": "user_id", "rating": "rating"},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    raw, _ = load_raw(cfg, DropLedger())
    assert raw.interactions.height == 36 and raw.interactions["user_id"].n_unique() == 6
    catalogue = raw.catalogue
    assert catalogue is not None
    camus = catalogue.filter(pl.col("item_id") == "2070360024").row(0, named=True)
    assert camus["title"] == 'L\'Étranger "édition poche"' and camus["author"] == "Albert Camus"
    assert catalogue.filter(pl.col("item_id") == "0316185361")["num:price"].to_list() == [17.17]  # string price
    assert catalogue.filter(pl.col("item_id") == "1087848539").row(0, named=True)["categories"] == []
    data = prepare_from_raw(raw, cfg, DropLedger())
    assert data.summary["n_test"] == 6


def test_amazon2023_jsonl_reads_the_configured_users_table(tmp_path, fixtures_dir):
    from booktower.data.errors import DataError

    reviews = tmp_path / "Books.jsonl"
    reviews.write_bytes((fixtures_dir / "amazon2023" / "Books.jsonl").read_bytes())
    (tmp_path / "users.csv").write_text("user_id,age\nAFKZENTNBQ7A7V7UXW5JJI6UGRYQ,30\nAE2MQVFHXNXJ5HPBQ4LUBVRWGMHA,41\n")
    cfg = DataConfig.model_validate({
        "source": {"format": "amazon2023-jsonl", "interactions": str(reviews), "items": None,
                   "users": str(tmp_path / "users.csv")},
        "columns": {"user": "user_id", "user_numeric": ["age"]}, "cache_dir": None,
    })
    raw, _ = load_raw(cfg, DropLedger())
    assert raw.users is not None and raw.users["num:age"].to_list() == [30.0, 41.0]
    assert tmp_path / "users.csv" in raw.input_paths
    missing = cfg.model_copy(update={"source": cfg.source.model_copy(update={"users": tmp_path / "nope.csv"})})
    with pytest.raises(DataError, match=r"nope\.csv.*users file does not exist"):
        load_raw(missing, DropLedger())


def test_movielens_refuses_a_users_table_it_would_ignore(tmp_path):
    from booktower.data.errors import DataError

    cfg = DataConfig.model_validate({
        "source": {"format": "movielens-100k", "interactions": str(tmp_path), "items": None,
                   "users": str(tmp_path / "readers.csv")}, "cache_dir": None,
    })
    with pytest.raises(DataError, match=r"readers\.csv: format movielens-100k reads its readers from u\.user.*users: null"):
        load_raw(cfg, DropLedger())


def test_amazon2023_jsonl_misspelt_field_is_named(tmp_path, fixtures_dir):
    from booktower.data.errors import DataError

    (tmp_path / "Books.jsonl").write_bytes((fixtures_dir / "amazon2023" / "Books.jsonl").read_bytes())
    cfg = DataConfig.model_validate({
        "source": {"format": "amazon2023-jsonl", "interactions": str(tmp_path / "Books.jsonl"), "items": None},
        "cache_dir": None,  # default mapping says userId; the reviews call it user_id
    })
    try:
        load_raw(cfg, DropLedger())
    except DataError as exc:
        assert "Did you mean 'user_id'?" in str(exc) and "data.columns.user" in str(exc)
    else:
        raise AssertionError("expected a DataError")


def _jsonl_config(reviews) -> DataConfig:
    return DataConfig.model_validate({
        "source": {"format": "amazon2023-jsonl", "interactions": str(reviews), "items": None},
        "columns": {"user": "user_id"}, "cache_dir": None,
    })


def test_amazon2023_jsonl_broken_lines_are_named(tmp_path, fixtures_dir):
    import pytest

    from booktower.data.errors import DataError

    good = (fixtures_dir / "amazon2023" / "Books.jsonl").read_text().splitlines(keepends=True)
    cases = {
        "not JSON": (good[:2] + ["{oops\n"] + good[2:], "line 3 is not JSON"),
        "not an object": (good[:1] + ["[1, 2]\n"] + good[1:], "line 2 is not a JSON object"),
        "blank": (["\n", "  \n"], "has no JSON lines"),
    }
    for name, (lines, message) in cases.items():
        reviews = tmp_path / f"{name.replace(' ', '_')}.jsonl"
        reviews.write_text("".join(lines))
        with pytest.raises(DataError, match=message) as exc:
            load_raw(_jsonl_config(reviews), DropLedger())
        assert str(reviews) in str(exc.value) and "Fix:" in str(exc.value), name


def test_amazon2023_jsonl_truncated_download_is_named(tmp_path, fixtures_dir):
    import pytest

    from booktower.data.errors import DataError

    for copies in (1, 50):  # cut within the first lines (read to check the mapping) or in the batches after them
        whole = gzip.compress((fixtures_dir / "amazon2023" / "Books.jsonl").read_bytes() * copies)
        reviews = tmp_path / f"Books-{copies}.jsonl.gz"
        reviews.write_bytes(whole[: len(whole) // 2])  # an interrupted download
        with pytest.raises(DataError, match="truncated or corrupt") as exc:
            load_raw(_jsonl_config(reviews), DropLedger())
        assert str(reviews) in str(exc.value) and "download or export it again" in str(exc.value)


def test_a_catalogue_whose_nested_field_is_empty_on_every_row_loads(tmp_path, fixtures_dir):
    """`"details": {}` on every line reads as a struct with no fields: the column is left empty, not a crash."""
    import json

    lines = [json.loads(line) for line in (fixtures_dir / "amazon2023" / "meta_Books.jsonl").read_text().splitlines()]
    (tmp_path / "meta_Books.jsonl").write_text("".join(json.dumps({**row, "details": {}}) + "\n" for row in lines))
    (tmp_path / "Books.jsonl").write_bytes((fixtures_dir / "amazon2023" / "Books.jsonl").read_bytes())
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "Books.jsonl"), "items": str(tmp_path / "meta_Books.jsonl")},
        "columns": {"user": "user_id", "rating": "rating"},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    raw, _ = load_raw(cfg, DropLedger())
    assert raw.catalogue is not None and raw.catalogue.height == len(lines)
    assert raw.catalogue.filter(pl.col("item_id") == "2070360024")["author"].to_list() == ["Albert Camus"]
