"""An epoch timestamp that is no time (`nan`, `inf`, `1e20`: beyond 64-bit seconds) is an unreadable value like
`yesterday`: under data.strict: false its row is dropped and counted as unparsable_timestamp, with where it is;
under data.strict it is an error naming the line. Never a crash in the cast to integers."""

from __future__ import annotations

import math

import polars as pl
import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare


def _config(path, strict: bool = False) -> DataConfig:
    return DataConfig.model_validate({
        "source": {"interactions": str(path), "items": None},
        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": "s"},
        "strict": strict, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def _log(tmp_path, bad: str):
    """u1 reads b1..b4 a minute apart; b2's time (line 3 of the file) is `bad`."""
    path = tmp_path / "log.csv"
    path.write_text(f"user_id,item_id,timestamp\nu1,b1,1500000000\nu1,b2,{bad}\nu1,b3,1500000120\nu1,b4,1500000180\n")
    return path


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "1e20", "99999999999999999999"])
def test_a_non_finite_or_huge_epoch_is_counted_as_unparsable(tmp_path, bad):
    ledger = DropLedger()
    raw, warnings = load_raw(_config(_log(tmp_path, bad)), ledger)
    assert ledger.as_dict() == {"unparsable_timestamp": 1}
    assert ledger.notes["unparsable_timestamp"] == "on line 3 of log.csv (the header is line 1)"
    assert raw.interactions["item_id"].to_list() == ["b1", "b3", "b4"]
    (warning,) = warnings  # it reaches data_summary.json's warnings, naming the file, the value and the line
    assert "log.csv" in warning and repr(bad) in warning and "line 3" in warning


def test_prepare_of_a_log_with_a_nan_time_drops_that_row(tmp_path):
    data, _ = prepare(_config(_log(tmp_path, "nan")))
    assert data.summary["dropped"] == {"unparsable_timestamp": 1}
    assert list(data.items.decode(data.split.test.item)) == ["b4"]
    assert any("'nan'" in w for w in data.summary["warnings"])


def test_a_nan_time_is_an_error_naming_its_line_under_strict(tmp_path):
    with pytest.raises(DataError, match=r"1 timestamp could not be parsed as epoch s \('nan'\) on line 3") as err:
        load_raw(_config(_log(tmp_path, "nan"), strict=True), DropLedger(strict=True))
    assert err.value.rows == [3] and "data.columns.timestamp_unit" in str(err.value).split("Fix:")[1]


def test_a_float_parquet_column_with_nan_and_huge_times_is_counted_too(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": ["u1"] * 5, "item_id": ["b1", "b2", "b3", "b4", "b5"],
                  "timestamp": [1.5e9, math.nan, 1.5e9 + 60.5, 1e20, 1.5e9 + 120]}).write_parquet(path)
    ledger = DropLedger()
    raw, _ = load_raw(_config(path), ledger)
    assert ledger.as_dict() == {"unparsable_timestamp": 2}
    assert ledger.notes["unparsable_timestamp"] == "in rows 2 and 4 of log.parquet (the first row is 1)"
    assert raw.interactions["timestamp"].to_list() == [1_500_000_000, 1_500_000_060, 1_500_000_120]
    assert raw.interactions["subsecond"].to_list() == [0, 500_000_000, 0]  # the half second is kept apart
