"""Splits: no test interaction in train; train never later than test; ties broken by order; cutoff and column."""

from __future__ import annotations

import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booktower.config.data import DataConfig, SplitConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import RawData
from booktower.data.prepare import prepare, prepare_from_raw
from booktower.data.splits import TEST, TRAIN, VALID, assign_parts, held_out_ties, order_by_time

events = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 20), st.integers(0, 5)),  # user, item, day (ties likely)
    min_size=1, max_size=120,
)


def _frame(rows) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64}, orient="row")
    frame = frame.unique(["user_id", "item_id"], keep="first", maintain_order=True)
    return frame.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String),
                              order=pl.int_range(pl.len(), dtype=pl.Int64))


@given(events)
@settings(max_examples=80, deadline=None)
def test_leave_last_out_properties(rows):
    frame = order_by_time(_frame(rows))
    frame = frame.with_columns(assign_parts(frame, SplitConfig()))
    train = frame.filter(pl.col("part") == TRAIN)
    test = frame.filter(pl.col("part") == TEST)
    valid = frame.filter(pl.col("part") == VALID)
    # no test interaction is in train
    assert not set(zip(test["user_id"], test["item_id"])) & set(zip(train["user_id"], train["item_id"]))
    # each user has at most one test and one validation interaction
    assert test["user_id"].is_unique().all() and valid["user_id"].is_unique().all()
    # train and validation are never later than the user's test event, in (timestamp, order)
    last = dict(zip(test["user_id"], zip(test["timestamp"], test["order"])))
    for part in (train, valid):
        for user, ts, order in zip(part["user_id"], part["timestamp"], part["order"]):
            if user in last:
                assert (ts, order) < last[user]
    # users with >= 2 interactions have a test item; users with >= 3 a validation item
    counts = frame.group_by("user_id").len()
    assert set(test["user_id"]) == set(counts.filter(pl.col("len") >= 2)["user_id"])
    assert set(valid["user_id"]) == set(counts.filter(pl.col("len") >= 3)["user_id"])


def test_timestamp_ties_are_broken_by_order():
    # Same timestamp for all three; file order says b3 came last.
    frame = pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["b2", "b3", "b1"], "timestamp": [5, 5, 5],
                          "order": [1, 2, 0]})
    frame = order_by_time(frame)
    frame = frame.with_columns(assign_parts(frame, SplitConfig()))
    parts = dict(zip(frame["item_id"], frame["part"]))
    assert parts == {"b1": TRAIN, "b2": VALID, "b3": TEST}



def test_held_out_interactions_tied_in_time_are_counted_and_warned_of_without_an_order_column(caplog):
    # u1: its test item ties with its validation item (1 tie); u2: its validation item ties with its first (1 tie);
    # u3: all distinct; u4: one interaction, kept in train, tied with nothing
    rows = [("u1", "a", 1), ("u1", "b", 5), ("u1", "c", 5),
            ("u2", "a", 2), ("u2", "b", 2), ("u2", "c", 9),
            ("u3", "a", 1), ("u3", "b", 2), ("u3", "c", 3), ("u4", "a", 7)]
    frame = order_by_time(_raw(rows).interactions)
    assert held_out_ties(frame.with_columns(assign_parts(frame, SplitConfig()))) == 2
    cfg = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1})
    with caplog.at_level("WARNING"):
        data = prepare_from_raw(_raw(rows), cfg, DropLedger())
    assert data.summary["held_out_timestamp_ties"] == 2
    assert "2 of 6 held-out interactions" in data.summary["warnings"][0] and "file order" in caplog.text
    ordered = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1,
                                         "columns": {"order": "seq_pos"}})
    data = prepare_from_raw(_raw(rows), ordered, DropLedger())  # the order column decides: counted, no warning
    assert data.summary["held_out_timestamp_ties"] == 2 and "warnings" not in data.summary

@pytest.mark.parametrize("kind", ["time_cutoff", "column"])
def test_ties_are_not_warned_of_where_time_or_labels_decide_the_parts(kind, caplog):
    # u1's test row ties with its validation row, as above; but here the cut-off or the label decides, not order.
    rows = [("u1", "a", T0), ("u1", "b", T0 + 40 * DAY), ("u1", "c", T0 + 40 * DAY), ("u2", "a", T0 + 45 * DAY),
            ("u2", "c", T0)]
    labels = pl.Series(["train", "validation", "test", "test", "train"])
    raw = _raw(rows, split_label=labels) if kind == "column" else _raw(rows)
    cfg = DataConfig.model_validate({"split": {"kind": kind, "valid_start": "2020-02-01", "test_start": "2020-02-12"}
                                     if kind == "time_cutoff" else {"kind": kind},
                                     "min_user_interactions": 1, "min_item_interactions": 1})
    with caplog.at_level("WARNING"):
        data = prepare_from_raw(raw, cfg, DropLedger())
    assert all(data.split.sizes().values())
    assert "warnings" not in data.summary and "held_out_timestamp_ties" not in data.summary
    assert "file order" not in caplog.text


def _raw(rows, **extra) -> RawData:
    frame = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}, orient="row")
    frame = frame.with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64), **extra)
    return RawData(frame, None, None, [])


def test_time_cutoff_split():
    day = 86_400
    t0 = 1_577_836_800  # 2020-01-01
    rows = [("u1", "a", t0), ("u1", "b", t0 + 40 * day), ("u2", "a", t0 + 70 * day), ("u2", "c", t0 + 10 * day)]
    cfg = DataConfig.model_validate({"split": {"kind": "time_cutoff", "valid_start": "2020-02-01",
                                                "test_start": "2020-03-01"},
                                     "min_user_interactions": 1, "min_item_interactions": 1})
    data = prepare_from_raw(_raw(rows), cfg, DropLedger())
    decode = lambda part: set(zip(data.users.decode(part.user), data.items.decode(part.item)))
    assert decode(data.split.train) == {("u1", "a"), ("u2", "c")}
    assert decode(data.split.valid) == {("u1", "b")}
    assert decode(data.split.test) == {("u2", "a")}
    assert data.split.train.timestamp.max() < data.split.valid.timestamp.min()


def test_column_split_reproduces_the_given_labels(tmp_path):
    (tmp_path / "log.csv").write_text(
        "user,item,ts,fold\n" "u1,a,1,train\n" "u1,b,2,valid\n" "u1,c,3,test\n" "u2,a,1,TRAIN\n" "u2,c,9,test\n"
    )
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": None},
        "columns": {"user": "user", "item": "item", "timestamp": "ts", "timestamp_unit": "s", "split": "fold"},
        "split": {"kind": "column"}, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    data, _ = prepare(cfg)
    assert data.split.sizes() == {"n_train": 2, "n_valid": 1, "n_test": 2}
    assert data.items.decode(data.split.valid.item) == ["b"]


def test_column_split_with_an_unmapped_label_is_an_error(tmp_path):
    (tmp_path / "log.csv").write_text("user,item,ts,fold\nu1,a,1,train\nu1,b,2,holdout\n")
    cfg = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": None},
        "columns": {"user": "user", "item": "item", "timestamp": "ts", "timestamp_unit": "s", "split": "fold"},
        "split": {"kind": "column"}, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    with pytest.raises(DataError, match="column 'fold'.*holdout.*data.split.labels"):  # the file's column name
        prepare(cfg)


def _column_split_config(tmp_path, text: str) -> DataConfig:
    (tmp_path / "log.csv").write_text(text)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": None},
        "columns": {"user": "user", "item": "item", "timestamp": "ts", "timestamp_unit": "s", "split": "fold"},
        "split": {"kind": "column"}, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def test_a_row_without_a_split_label_is_dropped_and_counted_not_lost(tmp_path):
    cfg = _column_split_config(tmp_path, "user,item,ts,fold\nu1,a,1,train\nu1,b,2,valid\nu1,c,3,test\n"
                                         "u2,a,1,train\nu2,b,2,\nu2,c,3,test\n")  # line 6: no label
    data, _ = prepare(cfg)
    sizes = data.split.sizes()
    assert sizes == {"n_train": 2, "n_valid": 1, "n_test": 2}
    assert sum(sizes.values()) == data.summary["n_interactions"]
    assert data.summary["dropped"] == {"missing_split_label": 1}
    strict = cfg.model_copy(update={"strict": True})
    with pytest.raises(DataError, match=r"column 'fold': 1 row would be dropped \(missing_split_label\) on line 6 of log.csv "
                                        r"\(the header is line 1\) and data.strict is on"):
        prepare(strict)


def test_a_null_label_reaching_the_split_is_an_error_naming_the_column():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3)]
    raw = _raw(rows, split_label=pl.Series(["train", None, "test"], dtype=pl.String))
    cfg = DataConfig.model_validate({"split": {"kind": "column"}, "columns": {"split": "part"},
                                     "min_user_interactions": 1, "min_item_interactions": 1})
    with pytest.raises(DataError, match=r"column 'part': 1 rows have no split label"):
        prepare_from_raw(raw, cfg, DropLedger())


def _cutoff_config(valid_start, test_start) -> DataConfig:
    return DataConfig.model_validate({"split": {"kind": "time_cutoff", "valid_start": valid_start,
                                                "test_start": test_start},
                                      "min_user_interactions": 1, "min_item_interactions": 1})


T0 = 1_577_836_800  # 2020-01-01T00:00:00Z
DAY = 86_400
SPREAD = [("u1", "a", T0), ("u1", "b", T0 + 40 * DAY), ("u2", "a", T0 + 70 * DAY), ("u2", "c", T0 + 10 * DAY)]


def test_time_cutoffs_with_an_offset_cut_at_that_instant():
    # 2020-02-10T01:00+02:00 is 2020-02-09T23:00Z: an event at 23:30Z on the 9th is already validation.
    rows = [("u1", "a", T0), ("u1", "b", T0 + 39 * DAY + 23 * 3600 + 1800), ("u2", "c", T0 + 70 * DAY)]
    data = prepare_from_raw(_raw(rows), _cutoff_config("2020-02-10T01:00:00+02:00", "2020-03-01"), DropLedger())
    assert data.items.decode(data.split.valid.item) == ["b"]


@pytest.mark.parametrize(("valid_start", "test_start", "empty"), [
    ("2021-01-01", "2021-06-01", "validation"),  # both after the data
    ("2020-02-01", "2021-06-01", "test"),
])
def test_cutoffs_that_leave_a_part_empty_name_the_keys_and_the_data_range(valid_start, test_start, empty):
    with pytest.raises(DataError) as err:
        prepare_from_raw(_raw(SPREAD), _cutoff_config(valid_start, test_start), DropLedger())
    message = str(err.value)
    assert f"leaves the {empty} set empty" in message
    assert "data.split.valid_start" in message and "data.split.test_start" in message
    assert "run from 2020-01-01 to 2020-03-11" in message  # the data's own time range


def _suggested(message: str) -> tuple[str, str]:
    found = re.search(r"e\.g\. data\.split\.valid_start=(\S+) and data\.split\.test_start=(\S+) hold out", message)
    assert found, message
    return found.group(1), found.group(2)


@pytest.mark.parametrize("hours", [
    list(range(0, 33)),  # 32 hours from midnight: the 80% and 90% points fall on the same day
    [0, 1, 2] + [20] * 30,  # most events at one instant: even the 80% and 90% times coincide
])
def test_cutoffs_suggested_on_a_short_log_are_distinct_valid_and_give_three_parts(hours):
    t0 = 1_714_521_600  # 2024-05-01T00:00:00Z
    rows = [(f"u{h % 4}", f"b{n}", t0 + 3600 * h) for n, h in enumerate(hours)]
    with pytest.raises(DataError) as err:
        prepare_from_raw(_raw(rows), _cutoff_config("2024-06-01", "2024-06-02"), DropLedger())
    valid_start, test_start = _suggested(str(err.value))
    assert "T" in valid_start and "T" in test_start  # whole days could not separate them
    assert "run from 2024-05-01T00:00:00 to" in str(err.value)
    data = prepare_from_raw(_raw(rows), _cutoff_config(valid_start, test_start), DropLedger())
    assert all(data.split.sizes().values())


@pytest.mark.parametrize(("rows", "expected"), [
    ([(f"u{d % 5}", f"b{d}", T0 + d * DAY) for d in range(100)], ("2020-03-20", "2020-03-30")),  # days 79.2, 89.1
    (SPREAD, ("2020-02-10", "2020-03-11")),  # days 52, 61 fall between events: cut at the nearest event days
])
def test_cutoffs_suggested_on_a_long_log_are_whole_days_that_give_three_parts(rows, expected):
    with pytest.raises(DataError) as err:
        prepare_from_raw(_raw(rows), _cutoff_config("2021-01-01", "2021-06-01"), DropLedger())
    assert _suggested(str(err.value)) == expected
    assert all(prepare_from_raw(_raw(rows), _cutoff_config(*expected), DropLedger()).split.sizes().values())


def test_a_log_with_two_distinct_times_is_told_no_cut_gives_three_parts():
    rows = [("u1", "a", T0), ("u1", "b", T0 + DAY), ("u2", "a", T0 + DAY)]
    with pytest.raises(DataError, match=r"fall at 2 distinct times.*leave_last_out"):
        prepare_from_raw(_raw(rows), _cutoff_config("2021-01-01", "2021-06-01"), DropLedger())


def test_leave_last_out_without_a_validation_row_says_readers_need_three():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u2", "c", 4)]  # two each: test only
    cfg = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1})
    with pytest.raises(DataError, match=r"validation set empty.*data\.min_user_interactions to at least 3"):
        prepare_from_raw(_raw(rows), cfg, DropLedger())


def test_a_label_column_without_validation_labels_names_the_label_mapping():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3)]
    raw = _raw(rows, split_label=pl.Series(["train", "test", "train"]))
    cfg = DataConfig.model_validate({"split": {"kind": "column"}, "min_user_interactions": 1,
                                     "min_item_interactions": 1})
    with pytest.raises(DataError, match=r"validation set empty.*data\.split\.labels"):
        prepare_from_raw(raw, cfg, DropLedger())
