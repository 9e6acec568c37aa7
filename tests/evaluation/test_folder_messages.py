"""A folder that cannot be compared or reported yet says what it is and the fix that works for its kind: a sweep
trial is trained as a run, a `--validation-only` run is completed (not evaluated), an unfinished run resumed."""

from __future__ import annotations

import pytest

from booktower.evaluation.compare import per_user_table
from booktower.evaluation.report import read_run


def test_a_sweep_trial_is_to_be_trained_as_a_run_not_resumed_nor_reported(tmp_path):
    trial = tmp_path / "sweep" / "trial_0001"
    trial.mkdir(parents=True)
    (trial / "config.yaml").write_text("seed: 1\n")
    (trial / "epochs.csv").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "sweep" / "trials.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"is a sweep trial.*booktower train --config .*trial_0001/config\.yaml "
                                                r"-o RUN --validation-only") as error:
        per_user_table(trial, "validation")
    assert "--resume" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"is a sweep trial.*train its config as a run") as error:
        read_run(trial)
    assert "--resume" not in str(error.value)


def test_a_validation_only_run_is_completed_before_its_report(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "validation.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"`--validation-only` run.*booktower train -o .* --resume") as error:
        read_run(tmp_path)
    assert "evaluate" not in str(error.value)


def test_an_unfinished_run_is_resumed_and_a_finished_one_evaluated(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(FileNotFoundError, match=r"has not finished training.*--resume"):
        read_run(tmp_path)
    (tmp_path / "model").mkdir()  # finished: its model written, run.json says so
    (tmp_path / "model" / "model.json").write_text("{}")
    (tmp_path / "run.json").write_text('{"finished": "2026-11-29T20:00:00+0000"}')
    with pytest.raises(FileNotFoundError, match=r"booktower evaluate --run"):
        read_run(tmp_path)


def test_a_run_trained_into_a_sweeps_folder_is_a_run_not_a_trial(tmp_path):
    """`booktower train --config sweep/best_config.yaml -o sweep/best`, interrupted: resume it."""
    (tmp_path / "trials.parquet").write_bytes(b"")
    run = tmp_path / "best"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 1\n")
    (run / "run.json").write_text('{"working_directory": "."}')
    with pytest.raises(FileNotFoundError, match="has not finished training") as error:
        per_user_table(run, "validation")
    assert "sweep trial" not in str(error.value)
