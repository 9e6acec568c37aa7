"""An interrupted `booktower train`: the hint continues the run as it was started, and `evaluate` / `export`
of the unfinished run say how to finish it."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


def _flat(output: str) -> str:
    return " ".join(output.split())  # the console wraps long lines


@pytest.fixture
def interrupt_after_epoch(monkeypatch):
    """interrupt_after_epoch(n): the next training gets a SIGINT (KeyboardInterrupt) right after epoch n's
    checkpoints (n=0: during the first epoch, before any checkpoint)."""

    def arm(epoch: int) -> None:
        checkpoint, train_epoch = Trainer._checkpoint, Trainer._train_epoch

        def checkpoint_then_stop(self, improved, stopped):
            checkpoint(self, improved, stopped)
            if self.epoch == epoch:
                raise KeyboardInterrupt

        def stop_in_first_epoch(self):
            raise KeyboardInterrupt

        monkeypatch.setattr(Trainer, "_checkpoint", checkpoint_then_stop)
        if epoch == 0:
            monkeypatch.setattr(Trainer, "_train_epoch", stop_in_first_epoch)

    return arm


def _hinted_command(output: str) -> list[str]:
    command = re.search(r"`booktower (train [^`]+)`", _flat(output))
    assert command, output
    return shlex.split(command.group(1))


def test_an_interrupted_validation_only_run_is_continued_as_one(tmp_path, interrupt_after_epoch, monkeypatch):
    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    interrupt_after_epoch(1)
    stopped = CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(run),
                                       "--set", "training.epochs=2", "--validation-only"])
    assert stopped.exit_code == 130, stopped.output
    assert "continues from the last finished epoch" in _flat(stopped.output)
    command = _hinted_command(stopped.output)
    assert command[-2:] == ["--resume", "--validation-only"]
    monkeypatch.undo()  # no more interruptions: run the hint exactly as printed
    resumed = CliRunner().invoke(app, command)
    assert resumed.exit_code == 0, resumed.output
    assert "the test split was not read" in _flat(resumed.output)
    assert (run / "validation.json").is_file() and not (run / "metrics.json").exists()


def test_an_interrupted_run_hint_has_no_validation_only_flag(tmp_path, interrupt_after_epoch):
    config = write_dataset(tmp_path / "data", 12)
    interrupt_after_epoch(1)
    stopped = CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(tmp_path / "run"),
                                       "--set", "training.epochs=2"])
    assert stopped.exit_code == 130, stopped.output
    assert _hinted_command(stopped.output)[-1] == "--resume"


def test_a_run_interrupted_before_its_first_checkpoint_is_said_to_start_again(tmp_path, interrupt_after_epoch):
    config = write_dataset(tmp_path / "data", 12)
    interrupt_after_epoch(0)
    stopped = CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(tmp_path / "run")])
    assert stopped.exit_code == 130, stopped.output
    message = _flat(stopped.output)
    assert "before the first epoch finished" in message and "starts it again" in message
    assert "continues from the last finished epoch" not in message


@pytest.mark.parametrize("command", [["evaluate"], ["export", "--output-dir", "BUNDLE"]])
def test_evaluate_and_export_of_an_unfinished_run_name_the_resume(tmp_path, interrupt_after_epoch, command):
    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    interrupt_after_epoch(1)
    stopped = CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(run),
                                       "--set", "training.epochs=2"])
    assert stopped.exit_code == 130, stopped.output
    args = [str(tmp_path / "bundle") if arg == "BUNDLE" else arg for arg in command]
    result = CliRunner().invoke(app, [*args, "--run", str(run)])
    message = _flat(result.output)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "has not finished training" in message and f"booktower train -o {run} --resume" in message
    assert "model.json is missing" not in message
    assert json.loads((run / "checkpoints" / "last" / "state.json").read_text())["epoch"] == 1


def test_load_run_of_a_sweep_trial_says_to_train_its_config_not_to_resume(tmp_path):
    from booktower.training.run import load_run

    trial = tmp_path / "sweep" / "trial_0001"
    trial.mkdir(parents=True)
    write_dataset(tmp_path / "data", 12).replace(trial / "config.yaml")
    (tmp_path / "sweep" / "trials.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"is a sweep trial.*booktower train --config .*trial_0001") as error:
        load_run(trial)
    assert "--resume" not in str(error.value)


@pytest.mark.parametrize("earlier", [None, "finished", "same config, finished"])
def test_a_run_interrupted_while_preparing_is_said_to_start_with_the_same_command(tmp_path, monkeypatch, earlier):
    """Before its config.yaml is written the folder holds nothing of this run: `--resume` found no config.yaml,
    or continued (or found finished) the earlier run. The hint names the command that starts this one."""
    import booktower.training.pipeline as pipeline

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    command = ["train", "--config", str(config), "--output-dir", str(run), "--set", "training.epochs=1"]
    if earlier:
        seed = "0" if earlier.startswith("same") else "7"
        assert CliRunner().invoke(app, [*command, "--set", f"seed={seed}"]).exit_code == 0
    before = (run / "config.yaml").read_bytes() if earlier else None

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_prepare_in_turn", interrupted)
        stopped = CliRunner().invoke(app, [*command, "--set", "seed=0"])
    message = _flat(stopped.output)
    assert stopped.exit_code == 130, stopped.output
    assert "run the same command again to start it" in message and "`booktower train" not in message, message
    assert ("earlier run's config.yaml" in message) == bool(earlier)
    if earlier:
        assert (run / "config.yaml").read_bytes() == before, "interrupted before it replaced anything"
    again = CliRunner().invoke(app, [*command, "--set", "seed=0"])
    assert again.exit_code == 0, again.output
    assert "seed: 0" in (run / "config.yaml").read_text()


def test_a_resume_interrupted_while_preparing_is_said_to_resume_again(tmp_path, monkeypatch, interrupt_after_epoch):
    import booktower.training.pipeline as pipeline

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    interrupt_after_epoch(1)
    first = CliRunner().invoke(app, ["train", "--config", str(config), "-o", str(run), "--set", "training.epochs=2"])
    assert first.exit_code == 130, first.output
    monkeypatch.undo()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_prepare_in_turn", interrupted)
        stopped = CliRunner().invoke(app, ["train", "-o", str(run), "--resume"])
    assert stopped.exit_code == 130 and "continues from the last finished epoch" in _flat(stopped.output)
    resumed = CliRunner().invoke(app, _hinted_command(stopped.output))
    assert resumed.exit_code == 0, resumed.output
