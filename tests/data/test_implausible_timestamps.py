"""In a log whose times lie in 1980-2100, a row outside that range (epoch ms among seconds, a 0 or 1900-01-01
placeholder) is dropped and counted as implausible_timestamp, with where it is and a warning that names the values
and the likely cause; at face value an epoch-ms row read as seconds lands in the year ~49,500 and becomes the
reader's test book. A log that lies outside as a whole keeps its rows and gets the whole-log unit warning."""

from __future__ import annotations

import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.prepare import prepare

# the QA's log3.csv: u1's second read is in epoch ms, the rest in seconds
LOG3 = ("user_id,item_id,timestamp\nu1,1,1500000000\nu1,2,1500000100000\nu1,3,1500000200\n"
        "u2,1,1500000000\nu2,2,1500000100\nu2,3,1500000200\n")


def _config(tmp_path, body: str, unit: str = "s", strict: bool = False, name: str = "log3.csv") -> DataConfig:
    (tmp_path / name).write_text(body)
    return DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / name), "items": None},
        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": unit},
        "strict": strict, "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })


def test_an_epoch_ms_row_in_a_log_of_seconds_is_dropped_not_held_out(tmp_path):
    ledger = DropLedger()
    raw, warnings = load_raw(_config(tmp_path, LOG3), ledger)
    assert ledger.as_dict() == {"implausible_timestamp": 1}
    assert ledger.notes["implausible_timestamp"] == "on line 3 of log3.csv (the header is line 1)"
    assert raw.interactions.filter(raw.interactions["user_id"] == "u1")["item_id"].to_list() == ["1", "3"]
    (warning,) = warnings
    for words in (str(tmp_path / "log3.csv"), "column 'timestamp'", "'1500000100000'", "49,503", "line 3",
                  "falls outside 1980-2100", "2017-07-14", "as epoch ms", "implausible_timestamp", "Fix:"):
        assert words in warning, words


def test_prepare_holds_out_the_last_read_in_seconds(tmp_path):
    data, _ = prepare(_config(tmp_path, LOG3))
    test = dict(zip(data.users.decode(data.split.test.user), data.items.decode(data.split.test.item)))
    assert test == {"u1": "3", "u2": "3"}
    assert data.summary["dropped"] == {"implausible_timestamp": 1}
    assert any("implausible_timestamp" in w for w in data.summary["warnings"])


def test_a_zero_placeholder_is_dropped_and_called_one(tmp_path):
    body = LOG3.replace("1500000100000", "0")
    ledger = DropLedger()
    _, warnings = load_raw(_config(tmp_path, body), ledger)
    assert ledger.as_dict() == {"implausible_timestamp": 1}
    assert "within a year of 1970-01-01" in warnings[0] and "placeholder" in warnings[0]


def test_a_placeholder_date_in_an_iso_log_is_dropped(tmp_path):
    body = ("user_id,item_id,timestamp\nu1,1,2020-01-01T00:00:00Z\nu1,2,9999-12-31\nu1,3,2020-01-03\n"
            "u1,4,2020-01-04\n")
    ledger = DropLedger()
    _, warnings = load_raw(_config(tmp_path, body, unit="iso"), ledger)
    assert ledger.as_dict() == {"implausible_timestamp": 1} and "'9999-12-31'" in warnings[0]


def test_strict_makes_an_implausible_time_an_error_naming_its_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_raw(_config(tmp_path, LOG3, strict=True), DropLedger(strict=True))
    message = str(err.value)
    assert "implausible_timestamp" in message and "line 3 of log3.csv" in message and err.value.rows == [3]
    assert "epoch ms" in message.split("Fix:")[1]


def test_a_log_wholly_in_another_unit_keeps_its_rows_and_the_unit_warning(tmp_path):
    body = "".join(["user_id,item_id,timestamp\n"] + [f"u1,{i},{1500000000000 + i * 1000}\n" for i in range(4)])
    ledger = DropLedger()
    raw, warnings = load_raw(_config(tmp_path, body, name="log.csv"), ledger)
    assert ledger.as_dict() == {} and raw.interactions.height == 4
    (warning,) = warnings
    assert "log.csv" in warning and "they look like epoch ms" in warning
