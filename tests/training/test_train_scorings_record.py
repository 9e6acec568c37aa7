"""Every scoring of a run folder's test split is recorded in RUN/test_scorings.json: one for a normal training run,
by the model the folder serves; a run trained over a finished one keeps the earlier entries, marked, and its report
says when the folder's test split has been scored by more than one model."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from booktower.data.toy import random_prepared
from booktower.evaluation import run_eval
from booktower.models.io import load_model
from booktower.training.ensemble_run import build_ensemble_run
from booktower.training.pipeline import train_run
from booktower.utils.scorings import TEST_SCORINGS, read_test_scorings

MANY_MODELS = "scored by 2 different models in this folder"


@pytest.fixture(scope="module")
def data():
    return random_prepared(n_users=40, n_items=30, per_user=6)


def _served_sha256(run: Path) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


def test_a_training_run_records_one_scoring_by_the_model_it_serves(small_config, data, tmp_path):
    result = train_run(small_config("training.epochs=2", "training.refit_on_validation=true"), tmp_path, data=data)
    entries = read_test_scorings(tmp_path)
    assert len(entries) == 1
    (entry,) = entries
    assert entry["command"] == "train" and entry["earlier_run"] is False
    assert entry["model_sha256"] == _served_sha256(tmp_path)  # the refit model: the one that scored test
    test = result.metrics["test"]
    assert entry["headline"] == {"HR@10": test["HR@10"], "NDCG@10": test["NDCG@10"]}
    assert "different models" not in (tmp_path / "report.md").read_text()
    assert TEST_SCORINGS not in json.loads((tmp_path / "run.json").read_text())  # run.json is left as it was


def test_another_config_trained_into_a_finished_run_keeps_its_scorings_and_the_report_warns(
        small_config, data, tmp_path, caplog):
    train_run(small_config("training.epochs=2"), tmp_path, data=data)
    first = read_test_scorings(tmp_path)
    with caplog.at_level(logging.WARNING):
        train_run(small_config("training.epochs=2", "model.output_dim=16", "model.dat.augment_dim=16"), tmp_path, data=data)
    entries = read_test_scorings(tmp_path)
    assert len(entries) == 2
    earlier, now = entries
    assert {key: earlier[key] for key in first[0] if key != "earlier_run"} == \
        {key: value for key, value in first[0].items() if key != "earlier_run"}
    assert earlier["earlier_run"] is True and "replaced_at" in earlier
    assert now["earlier_run"] is False and now["model_sha256"] == _served_sha256(tmp_path)
    assert now["model_sha256"] != earlier["model_sha256"]
    assert MANY_MODELS in (tmp_path / "report.md").read_text()
    assert "scored by 2 different models" in caplog.text and "marked as an earlier run's" in caplog.text


def test_the_same_config_trained_again_is_the_same_model_and_no_warning(small_config, data, tmp_path):
    config = small_config("training.epochs=2")
    train_run(config, tmp_path, data=data)
    train_run(config, tmp_path, data=data)
    entries = read_test_scorings(tmp_path)
    assert [entry["earlier_run"] for entry in entries] == [True, False]
    assert entries[0]["model_sha256"] == entries[1]["model_sha256"]  # one seed and config: the same weights
    report = (tmp_path / "report.md").read_text()
    assert "different models" not in report and "scored 2 times in this folder, each time by this model" in report


def test_a_validation_only_run_records_nothing_until_its_resume_scores_test(small_config, data, tmp_path):
    config = small_config("training.epochs=2", "training.refit_on_validation=true")
    train_run(config, tmp_path, data=data, validation_only=True)
    assert read_test_scorings(tmp_path) == []
    train_run(config, tmp_path, resume=True, data=data)
    entries = read_test_scorings(tmp_path)
    assert [entry["command"] for entry in entries] == ["train --resume"]
    assert entries[0]["model_sha256"] == _served_sha256(tmp_path)


def test_an_ensemble_run_records_its_one_scoring(small_config, data, tmp_path, monkeypatch):
    members = []
    for seed in (1, 2):
        config = small_config("training.epochs=2", f"seed={seed}")
        train_run(config, tmp_path / f"seed{seed}", data=data)
        members.append(tmp_path / f"seed{seed}")
    # toy data cannot be re-prepared from config.yaml: hand the run's own pieces to the loader seam
    monkeypatch.setattr(run_eval, "load_trained", lambda run: (config, data, load_model(run / "model")))
    build_ensemble_run(members, tmp_path / "ensemble")
    entries = read_test_scorings(tmp_path / "ensemble")
    assert [entry["command"] for entry in entries] == ["ensemble"]
    assert entries[0]["model_sha256"] == _served_sha256(tmp_path / "ensemble")
    assert [len(read_test_scorings(member)) for member in members] == [1, 1]  # the members' own, untouched


def test_a_hold_out_ensemble_is_recorded_as_no_model_of_the_folder_and_the_report_keeps_the_folders(
        small_config, data, tmp_path):
    from booktower.evaluation.report import write_report
    from booktower.training.ensemble_run import train_served_model

    config = small_config("training.epochs=1")
    train_served_model(config, tmp_path, data)  # the benchmark with one seed: a run in tmp_path itself
    train_served_model(config, tmp_path, data, seeds=[1, 2])  # then with two: seed-1, seed-2 and their ensemble
    served = _served_sha256(tmp_path)
    entries = read_test_scorings(tmp_path)
    assert [(entry["command"], entry.get("folder_model", True)) for entry in entries] == \
        [("train", True), ("ensemble (hold-out)", False)]
    assert entries[0]["model_sha256"] == served != entries[1]["model_sha256"]
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert f"`{served[:12]}` (this report's)" in report
    assert f"`{entries[1]['model_sha256'][:12]}` (not saved in this folder)" in report


def test_a_resume_refuses_a_damaged_record_before_it_trains_or_scores_test(small_config, data, tmp_path):
    from booktower.data.errors import DataError

    config = small_config("training.epochs=2", "training.refit_on_validation=true")
    train_run(config, tmp_path, data=data, validation_only=True)
    (tmp_path / TEST_SCORINGS).write_text('{"scorings": [')
    with pytest.raises(DataError, match="a resume scores the test split.*move it aside"):
        train_run(config, tmp_path, resume=True, data=data)
    assert not (tmp_path / "model").exists() and not (tmp_path / "metrics.json").exists()  # no refit, no scoring
    assert (tmp_path / TEST_SCORINGS).read_text() == '{"scorings": ['
