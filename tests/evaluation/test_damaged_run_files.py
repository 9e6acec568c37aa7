"""A run file damaged or edited by hand (invalid JSON, another JSON shape, a truncated Parquet or CSV file)
makes `report` and `compare` exit 2 with one error naming the file and the fix, never a traceback; the shared
reader (utils.run_files) on its own."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.data.errors import DataError
from booktower.utils.run_files import read_json_object, read_parquet

runner = CliRunner()
EVALUATE = "run `booktower evaluate --run"
RETRAIN = "or train the run again"
BASELINES = "compute the baselines again (`booktower baselines --config"


def _flat(text: str) -> str:
    return "".join(text.split())  # the console wraps long lines anywhere, inside a path too


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def spoil(path: Path, how: object) -> None:
    """`how`: "truncate", text to write (str), a JSON value to write (list), or {key: value} to set in it."""
    if how == "truncate":
        truncate(path)
    elif isinstance(how, str):
        path.write_text(how)
    elif isinstance(how, dict):
        content = json.loads(path.read_text()) if path.exists() else {}
        for key, value in how.items():
            parent, _, name = key.rpartition(".")
            (content[parent] if parent else content)[name] = value
        write_json(path, content)
    else:
        write_json(path, how)


DAMAGES = {  # name: (file, how it is spoilt, what the message says beyond the file)
    "metrics.json invalid": ("metrics.json", '{"test": ', "move it aside, then " + EVALUATE),
    "metrics.json a list": ("metrics.json", [1], "it holds a list where booktower writes an object"),
    "metrics.json a metric a word": ("metrics.json", {"test.NDCG@10": "high"},
                                     "test NDCG@10 is 'high', not a number"),
    "run.json invalid": ("run.json", "{", RETRAIN),
    "run.json timings a string": ("run.json", {"timings_seconds": "x"},
                                  "'timings_seconds' is a string where booktower writes an object"),
    "diagnostics.json invalid": ("diagnostics.json", "{x", EVALUATE),
    "audit.json invalid": ("audit.json", "[1,", EVALUATE),
    "audit.json examples not objects": ("audit.json", {"examples": [1]}, "'examples' are not all objects"),
    "data_summary.json a list": ("data_summary.json", [], RETRAIN),
    "per_user_test.parquet truncated": ("per_user_test.parquet", "truncate", EVALUATE),
    "epochs.csv unparsable": ("epochs.csv", 'epoch,loss\n1,"2\n', RETRAIN),
    "baselines/metrics.json invalid": ("baselines/metrics.json", "{", BASELINES),
    "a baseline's table truncated": ("baselines/pop/per_user_test.parquet", "truncate", "--models pop`"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_report_of_a_run_with_a_damaged_file_names_the_file_and_the_fix(fake_run: Path, damage: str):
    name, how, fix = DAMAGES[damage]
    assert runner.invoke(app, ["report", "--run", str(fake_run)]).exit_code == 0  # whole, it reports
    spoil(fake_run / name, how)
    result = runner.invoke(app, ["report", "--run", str(fake_run)])
    said = _flat(result.output)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert _flat(f"file {fake_run / name}: it is damaged, or was edited after booktower wrote it") in said
    assert "Fix:" in said and _flat(fix) in said


def _compare(run: Path, other: Path) -> str:
    """`compare` exits 2 without a traceback; its output with whitespace removed."""
    result = runner.invoke(app, ["compare", str(run), str(other), "--samples", "20"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return _flat(result.output)


@pytest.mark.parametrize("damage", ["truncate", "user_id,item_id\n"])
def test_compare_with_a_damaged_per_user_table_names_it_and_evaluate(fake_run: Path, damage: str):
    table = fake_run / "per_user_test.parquet"
    spoil(table, damage)
    said = _compare(fake_run, fake_run / "baselines" / "pop")
    assert _flat(f"file {table}:") in said
    assert _flat(f"Fix: run `booktower evaluate --run {fake_run}`") in said


def test_compare_with_an_invalid_split_json_names_it(fake_run: Path):
    spoil(fake_run / "split.json", '{"sha256": ')
    said = _compare(fake_run, fake_run / "baselines" / "pop")
    assert _flat(f"file {fake_run / 'split.json'}: it is damaged") in said and "JSONDecodeError" in said


def test_a_damaged_baseline_table_names_the_baselines_command_for_that_model(fake_run: Path):
    table = fake_run / "baselines" / "ease" / "per_user_test.parquet"
    spoil(table, "truncate")
    assert _flat(f"-o {fake_run / 'baselines'} --models ease`") in _compare(fake_run, table.parent)


def test_read_json_object_checks_the_top_level_and_the_named_keys(tmp_path: Path):
    path = tmp_path / "x.json"
    assert read_json_object(path, "FIX") is None  # missing: the caller decides
    write_json(path, {"a": {"b": 1}, "n": 3})
    assert read_json_object(path, "FIX", {"a": dict, "n": int, "absent": list}) == {"a": {"b": 1}, "n": 3}
    cases = [([1], None, "it holds a list where booktower writes an object"),
             ("text", None, "it holds a string"),
             ({"a": [1]}, {"a": dict}, "its 'a' is a list where booktower writes an object"),
             ({"n": True}, {"n": int}, "its 'n' is true/false where booktower writes a number")]
    for content, shape, problem in cases:
        write_json(path, content)
        with pytest.raises(DataError, match=problem) as error:
            read_json_object(path, "FIX", shape)
        assert str(error.value).startswith(f"file {path}: ") and str(error.value).endswith("Fix: FIX")
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="UnicodeDecodeError"):
        read_json_object(path, "FIX")


def test_read_parquet_names_missing_columns_and_passes_a_missing_file_through(tmp_path: Path):
    path = tmp_path / "t.parquet"
    pl.DataFrame({"user_id": ["a"], "rank": [1]}).write_parquet(path)
    assert read_parquet(path, "FIX", ("user_id",)).height == 1
    with pytest.raises(DataError, match=r"it has no column 'item_id'"):
        read_parquet(path, "FIX", ("user_id", "item_id"))
    with pytest.raises(FileNotFoundError):  # the CLI names a missing path itself
        read_parquet(tmp_path / "missing.parquet", "FIX")
