"""`train --validation-only`: the fit and its early stopping, the test split never read; a later `--resume`
completes the run exactly as one uninterrupted run would have."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from booktower.data.errors import DataError
from booktower.data.toy import random_prepared
from booktower.training.pipeline import train_run
from booktower.utils.runinfo import finished_at

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


@pytest.fixture
def scored(parts_scored, monkeypatch) -> list[str]:
    """`parts_scored` (the fit's per-epoch validations), and "final" for the run's final scoring (test included)."""
    import booktower.training.pipeline as pipeline_module

    import booktower.evaluation.run_eval as run_eval_module

    final = pipeline_module.evaluate_trained

    def final_scoring(*args, **kwargs):
        parts_scored.append("final")
        return final(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "evaluate_trained", final_scoring)
    split_scoring = run_eval_module.evaluate_split

    def run_scoring(score_fn, data, part, *args, **kwargs):  # the run's own scoring, after the fit
        parts_scored.append(f"run:{part}")
        return split_scoring(score_fn, data, part, *args, **kwargs)

    monkeypatch.setattr(run_eval_module, "evaluate_split", run_scoring)
    return parts_scored


def test_validation_only_never_reads_test_and_resume_then_ends_like_one_full_run(small_config, tmp_path, scored):
    data = random_prepared(n_users=60, n_items=30, per_user=8)
    config = small_config("training.epochs=3", "training.refit_on_validation=true")
    full = train_run(config, tmp_path / "full", data=data)
    scored.clear()

    run = tmp_path / "probe"
    probe = train_run(config, run, data=data, validation_only=True)
    assert set(scored) == {"validation", "run:validation"}  # per epoch, then the selected checkpoint: no test
    assert not any((run / name).exists() for name in ("model", "metrics.json", "refit", "report.md"))
    assert finished_at(run) is None  # unfinished on purpose: --resume goes on from here
    written = json.loads((run / "validation.json").read_text())
    assert written["best_epoch"] == full.fit.best_epoch == probe.fit.best_epoch
    assert written["validation"] == probe.metrics["validation"] == full.metrics["validation"]
    assert (run / "per_user_validation.parquet").read_bytes() == (tmp_path / "full" / "per_user_validation.parquet"
                                                                   ).read_bytes()
    probe_info = json.loads((run / "run.json").read_text())
    assert probe_info["validation_only"] is True

    scored.clear()
    completed = train_run(config, run, resume=True, data=data)
    # the completed run's time includes the probe's fit, which the resume did not repeat
    assert json.loads((run / "run.json").read_text())["timings_seconds"]["fit"] >= probe_info["timings_seconds"]["fit"]
    assert scored == ["final", "run:validation", "run:test"]  # the fit had ended: no epoch trained or validated again
    assert completed.metrics == full.metrics
    model = "model/model.safetensors"
    assert (run / model).read_bytes() == (tmp_path / "full" / model).read_bytes()
    assert finished_at(run) is not None
    assert not (run / "validation.json").exists()  # its "test not scored" would be stale: metrics.json says it all


def test_completing_a_probe_on_changed_data_is_refused(small_config, tmp_path):
    config = small_config("training.epochs=1")
    train_run(config, tmp_path, data=random_prepared(n_users=40, n_items=30, per_user=6), validation_only=True)
    other = random_prepared(n_users=41, n_items=30, per_user=6)
    with pytest.raises(DataError, match=r"not the data .* started on: the users differ from vocab/users.parquet"):
        train_run(config, tmp_path, data=other, resume=True)
    assert not (tmp_path / "metrics.json").exists()


def test_a_new_run_over_a_validation_only_run_forgets_its_result(small_config, tmp_path, caplog):
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    config = small_config("training.epochs=1")
    train_run(config, tmp_path, data=data, validation_only=True)
    assert (tmp_path / "validation.json").exists()
    with caplog.at_level(logging.WARNING, logger="booktower"):
        train_run(config, tmp_path, data=data)
    assert "holds a --validation-only run, which `--resume` would have completed" in caplog.text
    assert not (tmp_path / "validation.json").exists()


def test_cli_validation_only_prints_validation_and_how_to_finish(tmp_path):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    probed = CliRunner().invoke(app, ["train", "-c", str(config), "-o", str(run), "--set", "training.epochs=1",
                                      "--validation-only"])
    said = "".join(probed.output.split())  # the console wraps long lines anywhere
    assert probed.exit_code == 0, probed.output
    assert "validation(epoch1)" in said and "NDCG@20" in said
    assert "testHR@10" not in said  # the headline a finished run prints
    assert "--resume" in said and not (run / "metrics.json").exists()
    other = tmp_path / "other"
    assert CliRunner().invoke(app, ["train", "-c", str(config), "-o", str(other), "--set", "training.epochs=1",
                                    "--set", "seed=7", "--validation-only"]).exit_code == 0
    # two candidates paired on validation before either has met the test split
    paired = CliRunner().invoke(app, ["compare", str(run), str(other), "--split", "validation", "--metric", "NDCG@20"])
    assert paired.exit_code == 0, paired.output
    assert "NDCG@20 (validation)" in paired.output
    unscored = CliRunner().invoke(app, ["compare", str(run), str(other)])  # no test table yet
    assert unscored.exit_code != 0 and "--splitvalidation" in "".join(unscored.output.split())
    unexported = CliRunner().invoke(app, ["export", "--run", str(run), "-o", str(tmp_path / "bundle")])
    assert unexported.exit_code != 0 and "validation-only" in unexported.output and "Traceback" not in unexported.output
    finished = CliRunner().invoke(app, ["train", "-o", str(run), "--resume"])
    assert finished.exit_code == 0, finished.output
    assert "NDCG@20" in finished.output and (run / "metrics.json").exists()
