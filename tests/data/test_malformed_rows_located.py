"""A config's file with a malformed row (a field too many, a quote never closed, a broken JSON line) is refused
naming the line, what is wrong with it and the fix, as a command option's file already was."""

from __future__ import annotations

import json

import polars as pl
import pytest

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.readers import iter_ndjson_batches, read_table

HEADER = "user_id,item_id,timestamp\n"
ROWS = [f"u{i % 3},b{i},{1500000000 + i}\n" for i in range(8)]


def _load(tmp_path, name: str, content: str) -> DataError:
    path = tmp_path / name
    path.write_text(content)
    config = DataConfig.model_validate({"source": {"interactions": str(path), "items": None}, "cache_dir": None,
                                        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": "s"}})
    with pytest.raises(DataError) as exc:
        load_raw(config, DropLedger())
    assert str(path) in str(exc.value)
    return exc.value


def test_a_row_with_a_field_too_many_is_named_by_its_line(tmp_path):
    rows = [*ROWS[:5], "u1,b9,1500000009,extra\n", *ROWS[5:]]
    problem, fix = str(_load(tmp_path, "log.csv", HEADER + "".join(rows))).split(". Fix: ")
    assert "line 7 has 4 fields, the header 3; correct or delete that row" in problem
    assert "data.source.interactions_separator" in fix and "every row has the header's columns" in fix


def test_a_quote_never_closed_is_named_by_the_line_it_opens_on(tmp_path):
    rows = [*ROWS[:3], 'u1,"b9,1500000009\n', *ROWS[3:]]
    problem = str(_load(tmp_path, "log.csv", HEADER + "".join(rows))).split(". Fix: ")[0]
    assert "the row starting on line 5 is not valid CSV" in problem
    assert "a quote opened there is never closed" in problem


def test_a_broken_json_line_is_named_not_called_a_corrupt_file(tmp_path):
    records = [json.dumps({"user_id": f"u{i % 3}", "item_id": f"b{i}", "timestamp": 1500000000 + i})
               for i in range(8)]
    records[5] = '{"user_id": "u1", "item_id'
    problem, fix = str(_load(tmp_path, "log.jsonl", "\n".join(records) + "\n")).split(". Fix: ")
    assert "line 6 is not JSON (" in problem and "correct or delete that line" in problem
    assert "truncated or corrupt" not in problem
    assert "download or export it again" in fix  # a download cut short is the other way to get such a line


def test_a_json_line_that_is_no_object_is_named(tmp_path):
    path = tmp_path / "books.jsonl"
    path.write_text('{"item_id": "B1"}\n["B2"]\n')
    with pytest.raises(DataError, match=r"line 2 is not a JSON object \(it is a list\): correct or delete that line"):
        read_table(path, "items")


def test_a_broken_line_of_a_streamed_dump_is_named_in_a_later_batch(tmp_path):
    """amazon2023-jsonl reads in batches: the line number counts the batches before."""
    path = tmp_path / "Books.jsonl"
    lines = [json.dumps({"user_id": f"u{i}", "parent_asin": "B1"}) for i in range(50)]
    lines[40] = '{"user_id": "u40", "parent_asin": '
    path.write_text("\n".join(lines) + "\n")
    schema = {"user_id": pl.String(), "parent_asin": pl.String()}
    with pytest.raises(DataError, match=r"a JSON line could not be read: line 41 is not JSON \("):
        list(iter_ndjson_batches(path, schema, batch_bytes=200))
