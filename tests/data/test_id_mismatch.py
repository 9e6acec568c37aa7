"""Interactions whose book the catalogue lacks: a large share is a warning with example ids from both files, ids
that only differ in how they are written are diagnosed with the fix, and an empty result says why."""

from __future__ import annotations

import polars as pl
import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.id_mismatch import diagnose
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare

CATALOGUE = "book_id,title\n" + "".join(f"{i},Book {i}\n" for i in range(1, 11))


def _log(ids: list[str]) -> str:
    rows = [f"u{n % 2},{book},{1_600_000_000 + n}\n" for n, book in enumerate(ids)]
    return "user_id,book_id,ts\n" + "".join(rows)


def _config(log, books, **extra) -> DataConfig:
    return DataConfig.model_validate({
        "source": {"interactions": str(log), "items": str(books)},
        "columns": {"user": "user_id", "item": "book_id", "timestamp": "ts", "timestamp_unit": "s",
                    "item_title": "title", "item_author": None, "item_categories": None, "item_numeric": [],
                    "item_count_columns": [], "item_nonnegative": []},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None, **extra,
    })


def _mismatch(log: list[str], catalogue: list[str]):
    log_ids, catalogue_ids = pl.Series(log), pl.Series(catalogue)
    return diagnose(log_ids, catalogue_ids, ~log_ids.is_in(catalogue_ids.implode()))


@pytest.mark.parametrize(("log_id", "catalogue_id", "kind"), [
    ("0007", "7", "leading zeros"),
    ("7", "0007", "leading zeros"),  # the other way round
    ("b7x", "B7X", "letter case"),
    ("7.0", "7", "a trailing .0"),
    ("\ufeff7", "7", "spaces"),  # a byte-order mark survives strip_chars
])
def test_ids_written_differently_are_matched_and_the_difference_named(log_id, catalogue_id, kind):
    found = _mismatch([log_id, log_id, "3"], [catalogue_id, "3", "4"])
    assert (found.n_rows, found.n_unknown, found.n_rewritten) == (3, 2, 2)
    assert found.differences == {kind: (log_id, catalogue_id)}
    assert found.worth_a_warning()


def test_zero_is_still_zero_without_its_zeros():
    assert _mismatch(["000"], ["0"]).differences == {"leading zeros": ("000", "0")}


def test_unrelated_ids_are_not_said_to_be_written_differently():
    found = _mismatch(["x1", "x2", "1"], ["1", "2"])
    assert found.n_rewritten == 0 and found.differences == {} and found.log_examples == ["x1", "x2"]
    assert "data.columns.item" in found.fix()


def test_a_small_share_of_unknown_books_is_only_counted():
    found = _mismatch(["x1"] + [str(i) for i in range(1, 40)], [str(i) for i in range(1, 40)])
    assert found.share == pytest.approx(1 / 40) and not found.worth_a_warning()


def test_partly_zero_padded_ids_warn_into_the_summary_with_examples_and_the_fix(write_file):
    # 4 of 10 rows write the id with leading zeros: dropped, but no longer silently.
    ids = ["1", "2", "3", "4", "5", "6", "007", "008", "009", "0010"]
    cfg = _config(write_file("log.csv", _log(ids)), write_file("books.csv", CATALOGUE))
    data, _ = prepare(cfg)
    assert data.summary["dropped"]["item_not_in_catalogue"] == 4
    (warning,) = [w for w in data.summary["warnings"] if "item_not_in_catalogue" in w]
    assert "4 of 10 interaction rows (40.0%)" in warning
    # the catalogue's examples are ids the log never names, so the two lists show the difference
    assert "log ids ['007', '008', '009']" in warning and "catalogue ids ['7', '8', '9']" in warning
    assert "4 of those rows match a catalogue id when ignoring leading zeros" in warning
    assert "Fix: pad or strip the leading zeros" in warning


def test_when_no_interaction_is_left_the_error_carries_the_diagnosis(write_file):
    ids = [f"00{i}" for i in range(1, 10)]
    cfg = _config(write_file("log.csv", _log(ids)), write_file("books.csv", CATALOGUE))
    with pytest.raises(DataError) as err:
        load_raw(cfg, DropLedger())
    message = str(err.value)
    assert "no interactions are left" in message and "ignoring leading zeros (log '001' = catalogue '1')" in message
    assert "Fix: pad or strip the leading zeros" in message


def test_a_fallback_catalogue_is_named_as_the_likely_cause(tmp_path, monkeypatch):
    # Only data/users.csv exists: the catalogue falls back to the bundled sample, whose books are others.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.csv").write_text(
        "parent_asin,userId,timestamp\n" "MINE1,U1,1600000000000\n" "MINE2,U1,1600000001000\n")
    cfg = DataConfig.model_validate({
        "source": {"fallback_interactions": "pkg:sample/users_trimmed.csv", "fallback_items": "pkg:sample/books_trimmed.csv"},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    with pytest.raises(DataError) as err:
        load_raw(cfg, DropLedger())
    message = str(err.value)
    assert "most likely because the catalogue is the bundled sample" in message and "books_trimmed.csv" in message
    assert "data/books.csv does not exist" in message
    assert "set data.source.items" in message.split("Fix:")[1]


def _users_config(write_file, users: str) -> DataConfig:
    log = write_file("log.csv", "user_id,book_id,ts\n" + "".join(
        f"u{u:04d},{b},{1_600_000_000 + 10 * u + b}\n" for u in range(4) for b in (1, 2, 3)))
    cfg = _config(log, write_file("books.csv", CATALOGUE), columns={
        "user": "user_id", "item": "book_id", "timestamp": "ts", "timestamp_unit": "s", "item_title": "title",
        "item_author": None, "item_categories": None, "item_numeric": [], "item_count_columns": [],
        "item_nonnegative": [], "user_numeric": ["age"]})
    return cfg.model_copy(update={"source": cfg.source.model_copy(update={"users": write_file("users.csv", users)})})


def _users_warning(write_file, table: str) -> str:
    """The one users-table warning prepare writes into the summary for this table."""
    data, _ = prepare(_users_config(write_file, table))
    (warning,) = [w for w in data.summary["warnings"] if "users table" in w]
    return warning


def test_a_users_table_keyed_by_other_ids_is_warned_of_in_the_summary(write_file):
    warning = _users_warning(write_file, "user_id,age\n0,30\n1,40\n2,50\n")
    assert "4 of 4 readers (100.0%) have no row in the users table" in warning
    assert "log ids ['u0000', 'u0001', 'u0002'] vs users ids ['0', '1', '2']" in warning
    assert "Fix: check that both files' user id columns (data.columns.user)" in warning


def test_users_ids_written_differently_name_the_difference(write_file):
    warning = _users_warning(write_file, "user_id,age\nU0000,30\nu0001,40\nu0002,50\nu0003,60\n")
    assert "1 of 4 readers (25.0%)" in warning and "letter case (log 'u0000' = users 'U0000')" in warning


def test_users_rows_without_an_id_are_dropped_and_counted_and_a_matching_table_is_quiet(write_file):
    cfg = _users_config(write_file, "user_id,age\nu0000,30\n,99\nu0001,40\nu0002,50\nu0003,60\n")
    ledger = DropLedger()
    raw, warnings = load_raw(cfg, ledger)
    assert ledger.as_dict() == {"users_missing_user_id": 1} and ledger.notes["users_missing_user_id"] == \
        "on line 3 of users.csv (the header is line 1)"
    assert raw.users is not None and raw.users.height == 4 and not warnings


def test_the_users_table_examples_are_ids_the_log_does_not_name(write_file):
    # two of the table's first three rows match readers: showing them as the mismatch would mislead
    warning = _users_warning(write_file, "user_id,age\nu0000,30\nu0001,40\nx7,50\nx8,60\nx9,70\n")
    assert "2 of 4 readers (50.0%)" in warning
    assert "log ids ['u0002', 'u0003'] vs users ids ['x7', 'x8', 'x9']" in warning
