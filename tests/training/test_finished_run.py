"""`--resume` of a run that finished changes nothing; an interrupted refit resumes from its last epoch and
ends like the uninterrupted run."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from booktower.data.toy import random_prepared
from booktower.training.pipeline import RunAlreadyFinished, train_run
from booktower.training.trainer import Trainer
from booktower.utils.runinfo import finished_at

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run with its bytes and modification time: a rewrite with equal bytes shows too."""
    return {str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.rglob("*"))
            if p.is_file()}


def test_resuming_a_finished_run_leaves_every_file_untouched(small_config, tmp_path, monkeypatch):
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    config = small_config("training.epochs=2", "training.refit_on_validation=true")
    train_run(config, tmp_path, data=data)
    before = snapshot(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(Trainer, "__init__", refuse)
    with pytest.raises(RunAlreadyFinished) as done:
        train_run(config, tmp_path, resume=True, data=data)
    assert snapshot(tmp_path) == before
    assert str(tmp_path / "metrics.json") in str(done.value) and "drop --resume" in str(done.value)


@pytest.mark.parametrize("stop_in_epoch", [0, 1])
def test_a_run_trained_again_from_scratch_forgets_the_earlier_runs_end(small_config, tmp_path, monkeypatch,
                                                                       stop_in_epoch):
    """Interrupted, the new run is resumable: the old run's finished mark must not make --resume a no-op, nor
    its checkpoints pass for the new run's (stopped in its first epoch, it has none of its own yet)."""
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    config = small_config("training.epochs=2", "training.refit_on_validation=true")
    train_run(config, tmp_path, data=data)
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "metrics.json").write_text("{}")
    real = Trainer._train_epoch

    def interrupted(self):
        if self.epoch == stop_in_epoch:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path, data=data)
    assert finished_at(tmp_path) is None
    assert not (tmp_path / "refit" / "checkpoints").exists()
    assert (tmp_path / "checkpoints").exists() == (stop_in_epoch > 0)
    # nothing of the earlier run's results passes for this one's (export would ship its model), baselines stay
    assert not any((tmp_path / name).exists() for name in ("model", "metrics.json", "report.md", "audit.json"))
    assert (tmp_path / "baselines" / "metrics.json").exists()
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    train_run(config, tmp_path, resume=True, data=data)
    assert finished_at(tmp_path) is not None


def _epoch_losses(run: Path) -> list[str]:
    rows = csv.DictReader((run / "refit" / "epochs.csv").read_text().splitlines())
    return [row["loss_total"] for row in rows]


def test_an_interrupted_refit_resumes_from_its_last_epoch_and_ends_like_the_uninterrupted_run(
        small_config, tmp_path, monkeypatch):
    data = random_prepared(n_users=60, n_items=30, per_user=8)
    # one validation, at the last epoch: the selection keeps epoch 3, so the refit trains 3 epochs
    config = small_config("training.epochs=3", "training.eval_every=3", "training.refit_on_validation=true")
    full = train_run(config, tmp_path / "full", data=data)
    assert full.fit.best_epoch == 3
    real = Trainer._train_epoch
    trained: list[tuple[str, int]] = []  # (selection or refit, epoch number) of every epoch trained
    stop = [True]

    def spy(self):
        if stop and not self.validate and self.epoch == 2:
            stop.clear()
            raise KeyboardInterrupt  # once, in the refit's third epoch: its first two are checkpointed
        trained.append(("selection" if self.validate else "refit", self.epoch + 1))
        return real(self)

    monkeypatch.setattr(Trainer, "_train_epoch", spy)
    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train_run(config, run, data=data)
    assert trained[-2:] == [("refit", 1), ("refit", 2)] and not stop
    trained.clear()
    resumed = train_run(config, run, resume=True, data=data)
    assert trained == [("refit", 3)]  # the selection had finished, the refit's first two epochs were saved
    assert resumed.metrics == full.metrics
    model = "model/model.safetensors"
    assert (run / model).read_bytes() == (tmp_path / "full" / model).read_bytes()
    assert _epoch_losses(run) == _epoch_losses(tmp_path / "full")


def test_train_resume_of_a_finished_run_says_so_and_exits_0(tmp_path):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", "-c", str(config), "-o", str(run),
                                       "--set", "training.epochs=1"])
    assert trained.exit_code == 0, trained.output
    before = snapshot(run)
    resumed = CliRunner().invoke(app, ["train", "-o", str(run), "--resume"])
    said = "".join(resumed.output.split())  # the console wraps long lines anywhere
    assert resumed.exit_code == 0 and "Traceback" not in resumed.output, resumed.output
    assert "finishedtrainingat" in said and "".join(f"Metrics: {run / 'metrics.json'}".split()) in said
    assert snapshot(run) == before
