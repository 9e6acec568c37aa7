"""A split whose validation or test part holds under 50 readers, and under a quarter of the log's, is warned of
(in data_summary.json too), with the counts and a fix: metrics over a handful of readers are noise, and one
reader's hit reads as HR 1.0. A log that is small as a whole is not: n_users shows its size, and the split did
not make it smaller."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.ingest import RawData
from booktower.data.prepare import prepare_from_raw

DAY = 86_400
T0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())


def _raw(rows) -> RawData:
    frame = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
                         orient="row")
    return RawData(frame.with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64)), None, None, ["log.csv"])


def _readers(n: int):
    """n readers, each reading books b0..b4 on days 0..4 of 2020."""
    return [(f"u{u}", f"b{b}", T0 + DAY * b) for u in range(n) for b in range(5)]


def _cutoff(valid_start: str, test_start: str) -> DataConfig:
    return DataConfig.model_validate({"split": {"kind": "time_cutoff", "valid_start": valid_start,
                                                "test_start": test_start},
                                      "min_user_interactions": 1, "min_item_interactions": 1})


def test_a_cut_off_leaving_one_test_read_is_warned_of_with_the_counts_and_a_fix():
    rows = [*_readers(60), ("u0", "b9", T0 + 30 * DAY)]  # one read after the test cut-off
    data = prepare_from_raw(_raw(rows), _cutoff("2020-01-04", "2020-01-20"), DropLedger())
    assert data.split.sizes()["n_test"] == 1
    (warning,) = [w for w in data.summary["warnings"] if "test set" in w]
    for words in ("log.csv", "leaves 1 interaction of 1 reader in the test set", "of the log's 60 readers",
                  "noise", "Fix: move data.split.test_start earlier, e.g. data.split.valid_start="):
        assert words in warning, words
    assert not any("validation set" in w for w in data.summary["warnings"])  # 60 readers there: enough


def test_a_cut_off_holding_out_enough_readers_is_not_warned_of():
    data = prepare_from_raw(_raw(_readers(60)), _cutoff("2020-01-04", "2020-01-05"), DropLedger())
    assert data.split.sizes()["n_test"] == 60 and "warnings" not in data.summary


def test_a_small_log_is_not_warned_of_for_its_size():
    data = prepare_from_raw(_raw(_readers(4)), _cutoff("2020-01-04", "2020-01-05"), DropLedger())
    assert "warnings" not in data.summary


def test_leave_last_out_where_most_readers_have_one_read_is_warned_of():
    rows = [(f"u{u}", f"b{u % 7}", T0) for u in range(60)] + _readers(3)
    config = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1})
    data = prepare_from_raw(_raw(rows), config, DropLedger())
    warnings = [w for w in data.summary["warnings"] if "noise" in w]
    assert len(warnings) == 2 and "3 readers in the test set" in warnings[1]
    assert "data.min_user_interactions" in warnings[1].split("Fix:")[1]
