"""`booktower evaluate --run` and `recommend --run` record each reading of the test split in RUN/test_scorings.json:
the same model scored again is recorded and harmless; another model scoring the folder's test split is warned about
and the report says how many models did."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.data.toy import random_prepared
from booktower.evaluation import run_eval
from booktower.models.io import load_model
from booktower.training.pipeline import train_run
from booktower.training.run import run_config
from booktower.utils.scorings import read_test_scorings
from tests.conftest import small_config

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(toy data, two finished runs of it, seeds 1 and 2); each test changes a copy."""
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    base = tmp_path_factory.mktemp("scored")
    for seed in (1, 2):
        train_run(small_config("training.epochs=2", f"seed={seed}", "evaluation.bootstrap_samples=50"),
                  base / f"seed{seed}", data=data)
    return data, base / "seed1", base / "seed2"


@pytest.fixture
def run(trained, tmp_path, monkeypatch) -> Path:
    """A copy of the seed-1 run, whose data `load_trained` hands back (toy data cannot be re-prepared)."""
    data, first, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(first, copy)
    monkeypatch.setattr(run_eval, "load_trained", lambda path: (run_config(path), data, load_model(path / "model")))
    return copy


def _served_sha256(run: Path) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


def test_evaluating_twice_records_two_scorings_by_the_same_model(run):
    assert [entry["command"] for entry in read_test_scorings(run)] == ["train"]
    for _ in range(2):
        result = runner.invoke(app, ["evaluate", "--run", str(run)])
        assert result.exit_code == 0, result.output
        assert "different models" not in result.output
    entries = read_test_scorings(run)
    assert [entry["command"] for entry in entries] == ["train", "evaluate", "evaluate"]
    assert {entry["model_sha256"] for entry in entries} == {_served_sha256(run)}
    assert entries[1]["headline"] == entries[2]["headline"] == entries[0]["headline"]  # deterministic
    report = (run / "report.md").read_text()
    assert "different models" not in report and "scored 3 times in this folder, each time by this model" in report


def test_another_model_scored_in_the_folder_is_warned_about_and_reported(run, trained):
    shutil.rmtree(run / "model")
    shutil.copytree(trained[2] / "model", run / "model")  # the folder's model replaced by another one
    result = runner.invoke(app, ["evaluate", "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert "scored by 2 different models" in " ".join(result.output.split())
    entries = read_test_scorings(run)
    assert entries[-1]["model_sha256"] == _served_sha256(trained[2]) != entries[0]["model_sha256"]
    assert "scored by 2 different models in this folder" in (run / "report.md").read_text()


def test_recommend_from_a_run_records_its_test_lists_unscored(run, tmp_path):
    result = runner.invoke(app, ["recommend", "--run", str(run), "--all-test-users", "--k", "5",
                                 "--out", str(tmp_path / "top.csv")])
    assert result.exit_code == 0, result.output
    last = read_test_scorings(run)[-1]
    assert last["command"] == "recommend" and last["headline"] is None
    assert last["model_sha256"] == _served_sha256(run)


def test_recommend_on_a_folder_it_cannot_write_writes_the_lists_and_warns(run, tmp_path, monkeypatch):
    import errno

    from booktower.utils import scorings

    def read_only(path, obj):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(scorings, "atomic_write_json", read_only)
    result = runner.invoke(app, ["recommend", "--run", str(run), "--all-test-users", "--k", "5",
                                 "--out", str(tmp_path / "top.csv")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert (tmp_path / "top.csv").is_file() and "wrote" in output
    assert "could not be recorded" in output and "Read-only file system" in output
    assert [entry["command"] for entry in read_test_scorings(run)] == ["train"]


def test_recommend_records_the_model_it_loaded_even_if_the_file_is_replaced_while_it_scores(run, trained, tmp_path,
                                                                                              monkeypatch):
    loaded = _served_sha256(run)
    scored = run_eval.recommend_test

    def replaced_while_scoring(*args, **kwargs):
        shutil.rmtree(run / "model")
        shutil.copytree(trained[2] / "model", run / "model")  # e.g. a `train -o RUN` of another seed finishing
        return scored(*args, **kwargs)

    monkeypatch.setattr(run_eval, "recommend_test", replaced_while_scoring)
    result = runner.invoke(app, ["recommend", "--run", str(run), "--all-test-users", "--k", "5",
                                 "--out", str(tmp_path / "top.csv")])
    assert result.exit_code == 0, result.output
    assert read_test_scorings(run)[-1]["model_sha256"] == loaded != _served_sha256(run)


def test_recommend_refuses_a_damaged_record_before_it_scores(run, tmp_path, monkeypatch):
    (run / "test_scorings.json").write_text("{not json")
    monkeypatch.setattr(run_eval, "recommend_test", lambda *a, **k: pytest.fail("scored before the record was read"))
    result = runner.invoke(app, ["recommend", "--run", str(run), "--all-test-users", "--k", "5",
                                 "--out", str(tmp_path / "top.csv")])
    assert result.exit_code == 2 and "move it aside" in " ".join(result.output.split())
    assert not (tmp_path / "top.csv").exists() and (run / "test_scorings.json").read_text() == "{not json"


def test_the_reports_model_is_the_one_the_folder_serves_not_the_last_recorded(tmp_path):
    from booktower.evaluation.report_sections import test_scorings_note
    from booktower.utils.scorings import record_test_scoring

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"the single-seed run's weights")
    served = _served_sha256(tmp_path)
    record_test_scoring(tmp_path, "train", served, {"NDCG@10": 0.25}, [10])
    record_test_scoring(tmp_path, "ensemble (hold-out)", "e" * 64, {"NDCG@10": 0.5}, [10], folder_model=False)
    note = test_scorings_note(tmp_path)
    assert f"`{served[:12]}` (this report's)" in note and f"numbers below are model `{served[:12]}`'s" in note
    assert "`eeeeeeeeeeee` (not saved in this folder)" in note
    (tmp_path / "model" / "model.safetensors").unlink()
    assert "(this report's)" not in test_scorings_note(tmp_path)  # no model: none of them is the report's


@pytest.mark.parametrize("earlier", ["[1]", '{"validation": {"HR@10": 0.1', '{"epochs_note": "kept"}'])
def test_metrics_json_is_written_over_a_damaged_one_and_keeps_a_whole_ones_keys(tmp_path, earlier, caplog):
    from types import SimpleNamespace

    import polars as pl

    from booktower.evaluation.run_eval import write_metrics

    (tmp_path / "metrics.json").write_text(earlier)
    part = SimpleNamespace(per_user=pl.DataFrame({"user_id": ["u"], "rank": [1]}))
    evaluation = SimpleNamespace(metrics=lambda: {"validation": {"HR@10": 1.0}, "test": {"HR@10": 0.5}},
                                 test=part, validation=part)
    with caplog.at_level("WARNING"):
        write_metrics(tmp_path, evaluation)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test"] == {"HR@10": 0.5}
    assert ("epochs_note" in written) == ("kept" in earlier)
    assert ("written anew" in caplog.text) == ("kept" not in earlier)


def test_report_of_a_run_whose_record_is_damaged_says_so_on_the_terminal_and_in_the_report(run):
    (run / "test_scorings.json").write_text('{"scorings": [')
    result = runner.invoke(app, ["report", "--run", str(run)])
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "test scorings cannot be read" in said
    assert "The record of this folder's test scorings cannot be read" in (run / "report.md").read_text()
