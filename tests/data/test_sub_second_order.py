"""Reads are ordered by the full precision the log gives (epoch ms, us, ns, ISO fractions), not truncated to the
second: two reads 100 ms apart keep their order, a re-read keeps its earliest reading to the millisecond, and the
tie warning counts only reads at the very same time. Cut-offs and the prepared arrays keep whole seconds."""

from __future__ import annotations

import polars as pl

from booktower.config.data import DataConfig
from booktower.data.ingest import repeated_pairs
from booktower.data.prepare import prepare


def _prepared(tmp_path, body: str, unit: str):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n" + body)
    config = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "log.csv"), "items": None},
        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": unit},
        "min_user_interactions": 1, "min_item_interactions": 1, "cache_dir": None,
    })
    data, _ = prepare(config)
    return data


def _parts(data) -> dict[str, list[str]]:
    split = data.split
    return {name: list(data.items.decode(part.item)) for name, part in
            (("train", split.train), ("valid", split.valid), ("test", split.test))}


def test_reads_within_one_second_are_held_out_in_their_millisecond_order(tmp_path):
    # b2 is the latest read (.900), b3 the one before (.100), though the file lists b2 before b3
    data = _prepared(tmp_path, "u1,b1,1500000000000\nu1,b2,1500000000900\nu1,b3,1500000000100\n", "ms")
    assert _parts(data) == {"train": ["b1"], "valid": ["b3"], "test": ["b2"]}
    assert data.summary["held_out_timestamp_ties"] == 0
    assert not any("same timestamp" in w for w in data.summary.get("warnings", []))
    assert data.split.test.timestamp.tolist() == [1_500_000_000]  # the arrays keep whole seconds


def test_iso_fractions_order_reads_within_one_second(tmp_path):
    body = ("u1,b1,2020-01-01T08:00:00Z\nu1,b2,2020-01-01T08:00:01.75Z\nu1,b3,2020-01-01T08:00:01.250+00:00\n"
            'u1,b4,"2020-01-01T08:00:01,5Z"\n')  # a decimal comma, as ISO 8601 allows
    assert _parts(_prepared(tmp_path, body, "iso")) == {"train": ["b1", "b3"], "valid": ["b4"], "test": ["b2"]}


def test_a_re_read_keeps_its_earliest_reading_to_the_millisecond(tmp_path):
    # b1 is read at .100 and again at .900; b2 at .500 comes between: b2 is the latest first reading. Truncated
    # to seconds all three tie, and the file's first b1 (.900, after b2's row) would stay and be held out.
    body = "u1,b0,1499999999000\nu1,b2,1500000000500\nu1,b1,1500000000900\nu1,b1,1500000000100\n"
    data = _prepared(tmp_path, body, "ms")
    assert data.summary["dropped"] == {"duplicate_user_item": 1}
    assert _parts(data) == {"train": ["b0"], "valid": ["b1"], "test": ["b2"]}


def test_repeated_pairs_breaks_a_tie_in_seconds_by_the_subsecond():
    frame = pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "a", "b"], "timestamp": [5, 5, 5],
                          "subsecond": [900, 100, 0], "order": [0, 1, 2]})
    assert repeated_pairs(frame).to_list() == [True, False, False]


def test_only_reads_at_the_very_same_time_are_counted_as_ties(tmp_path):
    # u1's test read is 1 ms after its validation read (no tie); u2's is at the same millisecond (a tie)
    body = ("u1,b1,1500000000000\nu1,b2,1500000001000\nu1,b3,1500000001001\n"
            "u2,b1,1500000000000\nu2,b2,1500000001000\nu2,b3,1500000001000\n")
    data = _prepared(tmp_path, body, "ms")
    assert data.summary["held_out_timestamp_ties"] == 1
    (warning,) = [w for w in data.summary["warnings"] if "same timestamp" in w]
    assert warning.startswith(f"{tmp_path / 'log.csv'}: 1 of 4 held-out interactions") and "file order" in warning
