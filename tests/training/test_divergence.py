"""A diverged training stops at the first epoch whose loss (or weights) is not finite, keeping the last good
checkpoint, and the CLI says so in one line naming the fix."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from booktower.data.toy import random_prepared
from booktower.training.pipeline import build_model
from booktower.training.divergence import TrainingDivergedError, check_finite
from booktower.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


def _trainer(config, data, run_dir) -> Trainer:
    return Trainer(build_model(config, data, torch.device("cpu")), data, config.training, config.seed,
                   config.evaluation.ks, run_dir)


def test_an_epoch_that_diverges_stops_the_run_and_keeps_the_last_finite_epoch(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=8)
    trainer = _trainer(small_config("training.epochs=4"), data, tmp_path)

    def blow_up_after_epoch_1(row):  # as a learning rate far too high from epoch 2 on
        for opt in trainer.optim.optimizers:
            for group in opt.param_groups:
                group["base_lr"] *= 1e30

    with pytest.raises(TrainingDivergedError) as stopped:
        trainer.fit(on_epoch=blow_up_after_epoch_1)
    message = str(stopped.value)
    assert "epoch 2" in message and "training.optimizer.lr" in message and "training.optimizer.sparse_lr" in message
    assert "keeps epoch 1" in message
    last = tmp_path / "checkpoints" / "last"
    assert json.loads((last / "state.json").read_text())["epoch"] == 1
    assert all(bool(w.isfinite().all()) for w in load_file(str(last / "model.safetensors")).values())
    assert len((tmp_path / "epochs.csv").read_text().strip().splitlines()) == 2  # header + epoch 1


def test_weights_that_are_no_longer_finite_stop_the_run_too(small_config, tmp_path):
    """The epoch's loss is computed before each step's update: the last update can leave non-finite weights
    behind a finite loss, and that checkpoint must not replace the last good one."""
    trainer = _trainer(small_config("training.epochs=2"), random_prepared(n_users=30, n_items=20, per_user=6),
                       tmp_path)
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = math.nan
    with pytest.raises(TrainingDivergedError, match="weights not finite"):
        check_finite(trainer.model, 1.0, 1, tmp_path / "checkpoints", trainer.config.optimizer)
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = 0.0
    check_finite(trainer.model, 1.0, 1, tmp_path / "checkpoints", trainer.config.optimizer)  # finite: nothing to say


def test_the_cli_reports_a_diverged_training_as_one_error_line_and_writes_no_results(tmp_path):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(run),
                                      "--set", "training.optimizer.lr=1e30",
                                      "--set", "training.optimizer.sparse_lr=1e30"])
    message = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error: training diverged in epoch 1 (loss nan)" in message
    assert "lower training.optimizer.lr (now 1e+30)" in message
    assert not (run / "metrics.json").exists() and not (run / "report.md").exists()
    assert not (run / "checkpoints" / "last").exists()
