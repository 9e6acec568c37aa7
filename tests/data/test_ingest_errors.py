"""Every named DataError: the message names the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw

BOOKS = (
    'title,author,average_rating,rating_number,price,categories,parent_asin\n'
    '"[""A Book""]",Ann Writer,4.5,10,5.0,"[""Books"", ""Fiction""]",B1\n'
    '"[""Another""]",Bob Writer,4.0,3,7.5,"[""Books"", ""History""]",B2\n'
)
USERS = "parent_asin,userId,timestamp\nB1,U1,1600000000000\nB2,U1,1600000001000\nB1,U2,1600000002000\n"


def config(users: Path, books: Path | None, **data) -> DataConfig:
    return DataConfig.model_validate({
        "source": {"interactions": str(users), "items": str(books) if books else None, **data.pop("source", {})},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None, **data,
    })


def load(cfg: DataConfig) -> None:
    load_raw(cfg, DropLedger(strict=cfg.strict))


def assert_names(exc: pytest.ExceptionInfo[DataError], path: Path, *fix_words: str) -> None:
    message = str(exc.value)
    assert str(path) in message
    assert "Fix:" in message
    for word in fix_words:
        assert word in message.split("Fix:")[1], message


def test_missing_file_names_the_path_and_the_config_key(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as exc:
        load(config(missing, None))
    assert "does not exist" in str(exc.value)
    assert_names(exc, missing, "data.source.interactions", "booktower data synth")


def test_misspelt_column_suggests_the_closest_name(write_file):
    users = write_file("users.csv", USERS.replace("userId", "user_Id"))
    with pytest.raises(DataError) as exc:
        load(config(users, None))
    assert "Did you mean 'user_Id'?" in str(exc.value)
    assert exc.value.column == "userId"
    assert_names(exc, users, "data.columns.user")


def test_missing_catalogue_column_names_the_key(write_file):
    users = write_file("users.csv", USERS)
    books = write_file("books.csv", BOOKS.replace("categories", "genre"))
    with pytest.raises(DataError) as exc:
        load(config(users, books))
    assert "no column 'categories'" in str(exc.value)
    assert_names(exc, books, "data.columns.item_categories")


@pytest.mark.parametrize("content", ["", "parent_asin,userId,timestamp\n"], ids=["zero-bytes", "header-only"])
def test_empty_file(write_file, content):
    users = write_file("users.csv", content)
    with pytest.raises(DataError) as exc:
        load(config(users, None))
    assert "empty" in str(exc.value) or "no rows" in str(exc.value)
    assert_names(exc, users, "point the config at a file")


def test_wrong_delimiter_is_explained(write_file):
    users = write_file("users.tsv", USERS.replace(",", "\t"))
    with pytest.raises(DataError) as exc:
        load(config(users, None, source={"separator": ","}))
    assert "separator looks wrong" in str(exc.value)
    assert_names(exc, users, "data.source.separator")


def test_sniffed_delimiter_needs_no_config(write_file):
    users = write_file("users.tsv", USERS.replace(",", "\t"))
    raw, _ = load_raw(config(users, None), DropLedger())
    assert raw.interactions.height == 3


def test_wrong_encoding_suggests_latin1(write_file):
    users = write_file("users.csv", ("parent_asin,userId,timestamp\nB1,Zoë,1600000000000\n").encode("latin-1"))
    with pytest.raises(DataError) as exc:
        load(config(users, None))
    assert "UTF-8" in str(exc.value)
    assert_names(exc, users, "encoding: latin1")


def test_latin1_file_loads_when_configured(write_file):
    users = write_file("users.csv", ("parent_asin,userId,timestamp\nB1,Zoë,1600000000000\n").encode("latin-1"))
    raw, _ = load_raw(config(users, None, source={"encoding": "latin1"}), DropLedger())
    assert raw.interactions["user_id"].to_list() == ["Zoë"]


def test_unparsable_timestamps_give_rows_and_unit_fix(write_file):
    users = write_file("users.csv", USERS + "B2,U2,yesterday\n")
    with pytest.raises(DataError) as exc:
        load(config(users, None, strict=True))  # data.strict: false drops the row (test_ingest_drops)
    assert "could not be parsed" in str(exc.value) and "yesterday" in str(exc.value)
    assert exc.value.rows == [5]  # header is line 1
    assert_names(exc, users, "data.columns.timestamp_unit")


def test_iso_timestamps_parse_with_the_iso_unit(write_file):
    users = write_file("users.csv", "parent_asin,userId,timestamp\nB1,U1,2020-01-02T03:04:05\n")
    raw, _ = load_raw(config(users, None, columns={"timestamp_unit": "iso"}), DropLedger())
    assert raw.interactions["timestamp"].to_list() == [1577934245]


def test_one_iso_column_may_mix_naive_utc_and_offset_times(write_file):
    rows = ["2020-01-25T08:00:00", "2020-01-25 08:00:00.750", "2020-01-25T08:00:00Z", "2020-01-25T10:00:00+02:00",
            "2020-01-25T03:30-0430", "2020-01-25"]
    users = write_file("users.csv", "parent_asin,userId,timestamp\n" + "".join(f"B{i},U1,{t}\n" for i, t in enumerate(rows)))
    raw, _ = load_raw(config(users, None, columns={"timestamp_unit": "iso"}), DropLedger())
    eight = 1579939200  # 2020-01-25T08:00:00Z
    assert raw.interactions["timestamp"].to_list() == [eight] * 5 + [eight - 8 * 3600]


@pytest.mark.parametrize("bad", ["25/01/2020", "2020-02-30T08:00:00", "2020-01-25T25:00:00"])
def test_values_that_are_not_iso_times_still_name_the_examples(write_file, bad):
    users = write_file("users.csv", f"parent_asin,userId,timestamp\nB1,U1,2020-01-25T08:00:00Z\nB2,U1,{bad}\n")
    with pytest.raises(DataError, match="1 timestamp could not be parsed as ISO-8601 text") as exc:
        load(config(users, None, columns={"timestamp_unit": "iso"}, strict=True))
    assert bad in str(exc.value) and exc.value.rows == [3] and "on line 3 of the file" in str(exc.value)


def test_non_numeric_numeric_column(write_file):
    users = write_file("users.csv", USERS)
    books = write_file("books.csv", BOOKS.replace("4.0,3,7.5", "4.0,3,cheap"))
    with pytest.raises(DataError) as exc:
        load(config(users, books, strict=True))  # data.strict: false reads it as missing (test_ingest_drops)
    assert exc.value.column == "price" and "cheap" in str(exc.value)
    assert_names(exc, books, "data.columns.item_numeric")


def test_dollar_prices_and_blank_numbers_are_accepted(write_file):
    users = write_file("users.csv", USERS)
    books = write_file("books.csv", BOOKS.replace("4.0,3,7.5", "4.0,,$7.50"))
    raw, _ = load_raw(config(users, books), DropLedger())
    assert raw.catalogue is not None
    assert raw.catalogue["num:price"].to_list() == [5.0, 7.5]
    assert raw.catalogue["num:rating_number"].to_list()[1] is None


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_parquet_and_json_lines_load_as_the_csv_does(write_file, tmp_path, suffix):
    import polars as pl

    csv_users = write_file("users.csv", USERS)
    expected, _ = load_raw(config(csv_users, None), DropLedger())
    frame = pl.read_csv(csv_users, infer_schema=False)
    users = tmp_path / f"users{suffix}"
    frame.write_parquet(users) if suffix == ".parquet" else frame.write_ndjson(users)
    raw, _ = load_raw(config(users, None), DropLedger())
    assert raw.interactions.equals(expected.interactions)


def test_a_row_with_more_fields_than_the_header_names_the_separator_fix(write_file):
    users = write_file("users.csv", USERS + "B2,U3,1600000003000,extra,fields\n")
    with pytest.raises(DataError) as exc:
        load(config(users, None))
    assert "could not be parsed as CSV" in str(exc.value)
    assert_names(exc, users, "data.source.separator")


def _truncated_gzip(text: str) -> bytes:
    import gzip

    whole = gzip.compress(text.encode())
    return whole[: len(whole) // 2]


@pytest.mark.parametrize("name, content", [
    ("users.csv.gz", _truncated_gzip(USERS * 2000)),  # polars meets the end
    ("users.csv.gz", _truncated_gzip(USERS)),  # the separator sniffing meets it first
    ("users.csv.gz", b"a plain text file named .gz"),
    ("users.parquet", b"PAR1 and then not a parquet file"),
], ids=["truncated-gzip", "truncated-in-the-head", "not-gzip", "not-parquet"])
def test_a_damaged_file_is_named_with_the_way_to_replace_it(write_file, name, content):
    users = write_file(name, content)
    with pytest.raises(DataError, match="truncated or corrupt") as exc:
        load(config(users, None))
    assert_names(exc, users, "download or export it again", "gzip -t")


def test_timestamps_read_in_the_wrong_unit_are_warned_of_with_the_likely_unit(write_file):
    import polars as pl

    from booktower.data.values import timestamp_unit_warning

    seconds_2020 = pl.Series([1_600_000_000, 1_600_000_100])
    assert timestamp_unit_warning(seconds_2020, "s") is None
    as_ms = timestamp_unit_warning(seconds_2020 // 1000, "ms")  # epoch seconds read as ms
    assert "they look like epoch s" in as_ms and "data.columns.timestamp_unit" in as_ms
    assert "epoch ms" in timestamp_unit_warning(seconds_2020 * 1000, "s")  # ms read as s
    assert "look like" not in timestamp_unit_warning(pl.Series([5, 7]), "s")  # no unit fits: no guess
    users = write_file("users.csv", USERS.replace("1600000000000", "1600000000").replace("1600000001000", "1600000001")
                       .replace("1600000002000", "1600000002"))  # seconds, while the default mapping says ms
    _, warnings = load_raw(config(users, None), DropLedger())
    assert any("they look like epoch s" in w for w in warnings)


def test_a_tab_separated_log_beside_a_comma_catalogue_reads_with_per_file_separators(write_file):
    users = write_file("users.tsv", USERS.replace(",", "\t"))
    books = write_file("books.csv", BOOKS)
    with pytest.raises(DataError) as exc:  # one separator for every file breaks the catalogue
        load(config(users, books, source={"separator": "\t"}))
    assert_names(exc, books, "data.source.items_separator")
    raw, _ = load_raw(config(users, books, source={"interactions_separator": "\t", "items_separator": ","}),
                      DropLedger())
    assert raw.interactions.height == 3 and raw.catalogue is not None and raw.catalogue.height == 2
    raw, _ = load_raw(config(users, books, source={"separator": "\t", "items_separator": ","}), DropLedger())
    assert raw.catalogue is not None and raw.catalogue.height == 2  # the shared key stays the default


@pytest.mark.parametrize("role", ["interactions", "items"])
def test_a_directory_given_as_a_data_path_says_so_and_names_the_file_expected(write_file, tmp_path, role):
    users = write_file("data/users.csv", USERS)
    books = write_file("data/books.csv", BOOKS)
    folder = tmp_path / "data"
    paths = {"interactions": (folder, books), "items": (users, folder)}[role]
    with pytest.raises(DataError) as exc:
        load(config(*paths))
    message = str(exc.value)
    assert f"data.source.{role} is {folder}, a directory, not a file" in message
    assert "truncated or corrupt" not in message
    expected = {"interactions": "the interaction log", "items": "the book catalogue"}[role]
    assert expected in message.split("Fix:")[1]
    assert f"e.g. {folder / ('users.csv' if role == 'interactions' else 'books.csv')}" in message


def test_a_missing_relative_path_says_what_it_is_relative_to(tmp_path, monkeypatch):
    from booktower.data.errors import DataError

    monkeypatch.chdir(tmp_path)
    assert f"(relative to the working directory {tmp_path})" in str(DataError("gone", path="data/x.csv", fix="f"))
    (tmp_path / "here.csv").write_text("a\n")
    assert "working directory" not in str(DataError("bad", path="here.csv", fix="f"))
    assert "working directory" not in str(DataError("gone", path=str(tmp_path / "nope.csv"), fix="f"))
