"""Row-level problems are dropped and counted by reason; `strict` turns any drop into an error."""

from __future__ import annotations

import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare

BOOKS = (
    "title,author,average_rating,rating_number,price,categories,parent_asin\n"
    '"[""One""]",A,4.5,10,5.0,"[""Books""]",B1\n'
    '"[""Two""]",B,4.0,3,-2.0,"[""Books""]",B2\n'  # negative price
    '"[""Three""]",C,4.0,3,1.0,"[""Books""]",B3\n'
)
USERS = (
    "parent_asin,userId,timestamp,rating\n"
    "B1,U1,1600000000000,5\n"
    "B2,U1,1600000001000,4\n"
    "B1,U1,1600000002000,3\n"  # duplicate (U1, B1)
    "B1,,1600000003000,5\n"  # missing user id
    ",U2,1600000004000,5\n"  # missing item id
    "B9,U2,1600000005000,5\n"  # item absent from the catalogue
    "B3,U2,1600000006000,9\n"  # rating out of range
    "B3,U3,1600000007000,2\n"
)


def make_config(tmp_path, strict: bool = False) -> DataConfig:
    (tmp_path / "books.csv").write_text(BOOKS)
    (tmp_path / "users.csv").write_text(USERS)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "users.csv"), "items": str(tmp_path / "books.csv")},
        "columns": {"rating": "rating"}, "strict": strict,
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def test_each_reason_is_counted(tmp_path):
    ledger = DropLedger()
    raw, _ = load_raw(make_config(tmp_path), ledger)
    assert ledger.as_dict() == {
        "duplicate_user_item": 1, "item_not_in_catalogue": 1, "missing_item_id": 1, "missing_user_id": 1,
        "rating_out_of_range": 1,
    }
    assert raw.interactions.height == 3
    assert raw.catalogue is not None and raw.catalogue["num:price"].null_count() == 1  # negative -> missing
    assert raw.set_to_missing.as_dict() == {"negative_price": 1}  # a value blanked, not a row dropped
    # the duplicate keeps the first occurrence
    kept = raw.interactions.filter((raw.interactions["user_id"] == "U1") & (raw.interactions["item_id"] == "B1"))
    assert kept["timestamp"].to_list() == [1600000000]


def test_example_rows_are_recorded(tmp_path):
    ledger = DropLedger()
    load_raw(make_config(tmp_path), ledger)
    assert ledger.notes["missing_user_id"] == "on line 5 of users.csv (the header is line 1)"


def test_counts_land_in_the_summary(tmp_path):
    cfg = make_config(tmp_path)
    with (tmp_path / "users.csv").open("a") as log:  # a third book for U1, so leave-last-out has a validation row
        log.write("B3,U1,1600000008000,5\n")
    data, _ = prepare(cfg)
    assert data.summary["dropped"]["item_not_in_catalogue"] == 1
    assert data.summary["set_to_missing"]["negative_price"] == 1


def test_strict_turns_a_drop_into_an_error(tmp_path):
    with pytest.raises(DataError) as exc:
        load_raw(make_config(tmp_path, strict=True), DropLedger(strict=True))
    message = str(exc.value)
    assert str(tmp_path / "users.csv") in message and "data.strict" in message and "Fix:" in message


def test_strict_accepts_clean_data(tmp_path):
    cfg = make_config(tmp_path, strict=True)
    (tmp_path / "books.csv").write_text(BOOKS.replace("-2.0", "2.0"))
    (tmp_path / "users.csv").write_text("parent_asin,userId,timestamp,rating\nB1,U1,1600000000000,5\nB2,U1,1600000001000,4\n")
    raw, _ = load_raw(cfg, DropLedger(strict=True))
    assert raw.interactions.height == 2


def test_min_rating_drops_below_threshold(tmp_path):
    cfg = make_config(tmp_path)
    cfg = cfg.model_copy(update={"columns": cfg.columns.model_copy(update={"min_rating": 4.0})})
    ledger = DropLedger()
    raw, _ = load_raw(cfg, ledger)
    assert ledger.counts["below_min_rating"] == 2  # the rating-3 repeat and U3's rating 2
    assert set(raw.interactions["user_id"]) == {"U1"}


def test_ids_are_stripped_of_surrounding_spaces(tmp_path):
    (tmp_path / "users.csv").write_text("parent_asin,userId,timestamp\n B1 ,U1,1600000000000\nB1,U1 ,1600000001000\n")
    cfg = DataConfig.model_validate({"source": {"interactions": str(tmp_path / "users.csv"), "items": None},
                                     "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None})
    ledger = DropLedger()
    raw, _ = load_raw(cfg, ledger)
    assert raw.interactions["item_id"].to_list() == ["B1"] and ledger.counts["duplicate_user_item"] == 1


def test_repeated_pairs_is_exact_and_keeps_the_first():
    import polars as pl

    from booktower.data.ingest import repeated_pairs

    frame = pl.DataFrame({"user_id": ["u1", "u1", "u2", "u1", "u2"], "item_id": ["a", "b", "a", "a", "b"]})
    assert repeated_pairs(frame).to_list() == [False, False, False, True, False]
    assert repeated_pairs(frame.head(3)).to_list() == [False, False, False]

    # the pair's earliest reading stays wherever it sits in the file; a tie in time falls to `order`
    timed = frame.with_columns(timestamp=pl.Series([50, 1, 1, 10, 1]), order=pl.Series([0, 1, 2, 3, 4]))
    assert repeated_pairs(timed).to_list() == [True, False, False, False, False]
    tied = timed.with_columns(timestamp=pl.Series([10, 1, 1, 10, 1]), order=pl.Series([9, 1, 2, 3, 4]))
    assert repeated_pairs(tied).to_list() == [True, False, False, False, False]


def test_a_re_read_leaves_the_same_split_wherever_its_rows_sit(tmp_path):
    """A re-read listed first in the file must not become the reader's held-out book."""
    rows = [f"U{u},B{b},{1_600_000_000 + 100 * b + u}" for u in range(6) for b in range(5)]
    reread = [f"U{u},B0,1900000000" for u in range(6)]  # much later: a second reading of their first book
    splits = []
    for name, lines in (("end", rows + reread), ("top", reread + rows)):
        (tmp_path / f"{name}.csv").write_text("userId,parent_asin,timestamp\n" + "\n".join(lines) + "\n")
        cfg = DataConfig.model_validate({
            "source": {"interactions": str(tmp_path / f"{name}.csv"), "items": None},
            "columns": {"timestamp_unit": "s", "item_numeric": [], "item_count_columns": [], "item_nonnegative": []},
            "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None})
        data, _ = prepare(cfg)
        assert data.summary["dropped"]["duplicate_user_item"] == 6
        splits.append(sorted(data.items.decode(data.split.test.item)))
    assert splits[0] == splits[1] == ["B4"] * 6


def test_blank_lines_are_counted_as_empty_rows_not_as_missing_ids(tmp_path):
    # Lines 3 and 5 are blank, line 6 has only separators; line 7 lacks just its user id.
    (tmp_path / "users.csv").write_text("parent_asin,userId,timestamp\nB1,U1,1600000000000\n\nB2,U1,1600000001000\n"
                                        "\n,,\nB3,,1600000002000\n")
    (tmp_path / "readers.csv").write_text("userId,age\nU1,30\n\n \n")
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "users.csv"), "items": None, "users": str(tmp_path / "readers.csv")},
        "columns": {"user_numeric": ["age"]}, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    ledger = DropLedger()
    raw, _ = load_raw(cfg, ledger)
    assert ledger.as_dict() == {"empty_row": 3, "missing_user_id": 1, "users_empty_row": 2}
    assert ledger.notes["empty_row"] == "on lines 3, 5 and 6 of users.csv (the header is line 1)"
    assert ledger.notes["missing_user_id"] == "on line 7 of users.csv (the header is line 1)"
    assert raw.interactions["item_id"].to_list() == ["B1", "B2"]
    assert raw.users is not None and raw.users["user_id"].to_list() == ["U1"]


def test_blank_lines_in_the_catalogue_are_counted_as_empty_rows(tmp_path):
    cfg = make_config(tmp_path)
    (tmp_path / "books.csv").write_text(BOOKS + "\n,,,,,,\n")
    ledger = DropLedger()
    load_raw(cfg, ledger)
    assert ledger.counts["catalogue_empty_row"] == 2 and "catalogue_missing_item_id" not in ledger.counts


# Text that is not a time, a rating or an order is one row's defect under data.strict: false, like an empty value:
# dropped and counted under its own reason. Most of a column unreadable is a wrong unit or mapping: still an error.
def _log(tmp_path, body: str, columns: dict, strict: bool = False) -> DataConfig:
    (tmp_path / "log.csv").write_text(body)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": None}, "columns": columns,
        "strict": strict, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def _many_rows(bad: dict[int, tuple[str, str]], n: int = 20) -> str:
    """n rows of `parent_asin,userId,timestamp,rating,seq` with (timestamp, rating) replaced on the rows in `bad`."""
    lines = ["parent_asin,userId,timestamp,rating,seq"]
    for i in range(n):
        stamp, rating = bad.get(i, (f"2020-01-{1 + i:02d}T08:00:00Z", "4"))
        lines.append(f"B{i},U{i % 4},{stamp},{rating},{i}")
    return "\n".join(lines) + "\n"


ISO_RATED = {"timestamp_unit": "iso", "rating": "rating"}


def test_unparsable_timestamps_and_ratings_are_dropped_and_counted_when_not_strict(tmp_path):
    body = _many_rows({3: ("yesterday", "4"), 7: ("2020-01-08T08:00:00Z", "five"), 9: ("", "4")})
    ledger = DropLedger()
    raw, _ = load_raw(_log(tmp_path, body, ISO_RATED), ledger)
    assert ledger.as_dict() == {"missing_timestamp": 1, "unparsable_rating": 1, "unparsable_timestamp": 1}
    assert ledger.notes["unparsable_timestamp"].startswith("on line 5 of ")  # data row 3 is file line 5
    assert ledger.notes["unparsable_rating"].startswith("on line 9 of ")
    assert raw.interactions.height == 17 and "B3" not in raw.interactions["item_id"].to_list()


def test_an_unparsable_order_is_dropped_and_counted_when_not_strict(tmp_path):
    body = _many_rows({}).replace(",12\n", ",twelve\n")
    ledger = DropLedger()
    raw, _ = load_raw(_log(tmp_path, body, {**ISO_RATED, "order": "seq"}), ledger)
    assert ledger.as_dict() == {"unparsable_order": 1} and raw.interactions.height == 19


@pytest.mark.parametrize("bad, column", [(("yesterday", "4"), "timestamp"),
                                         (("2020-01-04T08:00:00Z", "five"), "rating")])
def test_unparsable_values_stay_an_error_when_strict(tmp_path, bad, column):
    with pytest.raises(DataError, match="1 timestamp could not be parsed|1 value is not a number") as err:
        load_raw(_log(tmp_path, _many_rows({3: bad}), ISO_RATED, strict=True), DropLedger(strict=True))
    assert err.value.column == column and err.value.rows == [5] and bad[column == "rating"] in str(err.value)
    assert "on line 5 of the file (the header is line 1)" in str(err.value)
    assert "with data.strict: false those rows are dropped and counted" in str(err.value)


def test_a_mostly_unparsable_column_is_an_error_even_when_not_strict(tmp_path):
    # Epoch milliseconds read as ISO text: every value fails, which is the config's unit, not bad rows.
    body = "".join(["parent_asin,userId,timestamp\n"] + [f"B{i},U1,{1600000000000 + i}\n" for i in range(10)])
    expected = r"10 timestamps could not be parsed as ISO-8601 text .*100% of its non-empty values"
    with pytest.raises(DataError, match=expected) as err:
        load_raw(_log(tmp_path, body, {"timestamp_unit": "iso"}), DropLedger())
    assert "data.columns.timestamp_unit" in str(err.value).split("Fix:")[1]


def test_a_non_number_in_the_catalogue_is_missing_and_counted_when_not_strict(tmp_path):
    cfg = make_config(tmp_path)
    (tmp_path / "books.csv").write_text(BOOKS.replace("4.0,3,1.0", "4.0,3,cheap"))
    raw, _ = load_raw(cfg, DropLedger())
    missing = raw.set_to_missing
    assert missing.as_dict()["catalogue_unparsable_price"] == 1 and missing.notes["catalogue_unparsable_price"] == \
        "on line 4 of books.csv (the header is line 1)"
    assert raw.catalogue is not None and raw.catalogue.height == 3  # the book stays, its price is missing
    assert raw.catalogue.filter(raw.catalogue["item_id"] == "B3")["num:price"].to_list() == [None]


def test_prepare_reports_the_unparsable_drops(tmp_path):
    data, _ = prepare(_log(tmp_path, _many_rows({3: ("yesterday", "4"), 5: ("2020-01-06T08:00:00Z", "five")}),
                           ISO_RATED))
    assert data.summary["dropped"]["unparsable_timestamp"] == 1 and data.summary["dropped"]["unparsable_rating"] == 1


def test_a_strict_run_does_not_pass_on_a_cache_written_by_a_lenient_one(tmp_path):
    lenient = _log(tmp_path, _many_rows({3: ("yesterday", "4")}), ISO_RATED).model_copy(
        update={"cache_dir": tmp_path / "cache"})
    data, _ = prepare(lenient)
    assert data.summary["dropped"] == {"unparsable_timestamp": 1}
    assert prepare(lenient)[0].summary["cache"]["hit"] is True
    with pytest.raises(DataError, match="1 timestamp could not be parsed"):
        prepare(lenient.model_copy(update={"strict": True}))
