"""What a killed or damaged run folder leaves for `--resume`: a new run killed while it replaces an earlier one
resumes as itself or is refused, never as the earlier run; a damaged run.json is refused, a missing one said;
and run.json never says finished for a segment that was killed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import booktower.training.run_folder as run_folder
import booktower.utils.runinfo as runinfo
from booktower.cli.app import app
from booktower.config import ConfigError
from booktower.data.errors import DataError
from booktower.data.toy import random_prepared
from booktower.training.pipeline import train_run
from booktower.training.run import run_config
from booktower.training.trainer import Trainer
from booktower.utils.runinfo import FINISHED, finished_at

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


class Killed(BaseException):
    """What a SIGKILL leaves: the files as they were, no handler run."""


def _kill_after(patch: pytest.MonkeyPatch, name: str) -> None:
    real = getattr(run_folder, name)

    def then_killed(*args, **kwargs):
        real(*args, **kwargs)
        raise Killed(name)

    patch.setattr(run_folder, name, then_killed)


def _segments(run: Path) -> list[dict]:
    return json.loads((run / "run.json").read_text())["segments"]


@pytest.mark.parametrize("killed_after", ["mark_earlier_run", "_forget_earlier_run", "record_start",
                                          "write_split_identity", "atomic_write_json"])
def test_a_new_run_killed_while_it_replaces_a_finished_one_never_resumes_the_old_config(
        small_config, tmp_path, monkeypatch, killed_after):
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    old, new = (small_config("training.epochs=1", f"seed={seed}") for seed in (1, 2))
    run = tmp_path / "run"
    train_run(old, run, data=data)
    with monkeypatch.context() as patch:
        _kill_after(patch, killed_after)
        with pytest.raises(Killed):
            train_run(new, run, data=data)
    if killed_after == "mark_earlier_run":  # nothing replaced yet: the earlier run is whole
        assert run_config(run).seed == 1 and finished_at(run) is not None
        return
    assert not (run / "config.yaml").exists(), "the old config.yaml went first; the new one comes last"
    for config in (old, new):  # the CLI's `--resume` without --config is refused before either
        with pytest.raises(ConfigError, match="holds no config.yaml.*without --resume"):
            train_run(config, run, resume=True, data=data)
    train_run(new, run, data=data)
    assert run_config(run).seed == 2


def test_a_new_run_killed_after_its_config_is_written_resumes_the_new_config(small_config, tmp_path, monkeypatch):
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    old, new = (small_config("training.epochs=1", f"seed={seed}") for seed in (1, 2))
    run = tmp_path / "run"
    train_run(old, run, data=data)
    with monkeypatch.context() as patch:
        _kill_after(patch, "atomic_write_text")
        with pytest.raises(Killed):
            train_run(new, run, data=data)
    assert run_config(run).seed == 2 and finished_at(run) is None and not (run / "checkpoints").exists()
    with pytest.raises(ConfigError, match="seed"):
        train_run(old, run, resume=True, data=data)
    train_run(new, run, resume=True, data=data)
    assert finished_at(run) is not None and json.loads((run / "run.json").read_text())["seed"] == 2


KILL_AFTER_START = """
import os, signal, sys
import booktower.utils.runinfo as runinfo
real = runinfo.record_start
def then_killed(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
runinfo.record_start = then_killed
sys.argv = ["booktower", *sys.argv[1:]]
from booktower.cli.app import main
main()
"""


def test_a_sigkill_after_the_new_runs_start_record_leaves_a_resume_that_is_refused(tmp_path):
    """The QA case: killed between the wipe and the config, `train -o RUN --resume` trained the OLD config."""
    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    command = ["train", "--config", str(config), "-o", str(run), "--set", "training.epochs=1"]
    assert CliRunner().invoke(app, [*command, "--set", "seed=1"]).exit_code == 0
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_START, *command, "--set", "seed=2"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    resumed = CliRunner().invoke(app, ["train", "-o", str(run), "--resume"])
    said = " ".join(resumed.output.split())
    assert resumed.exit_code == 2 and "holds no config.yaml" in said and "without --resume" in said, said
    assert not (run / "checkpoints").exists()


@pytest.fixture
def interrupted_run(small_config, tmp_path, monkeypatch):
    """A run stopped (Ctrl-C) in its second epoch, the first checkpointed, and its config and data."""
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    config = small_config("training.epochs=2", "training.early_stopping.patience=10")
    train_epoch = Trainer._train_epoch

    def stopped(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", stopped)
        with pytest.raises(KeyboardInterrupt):
            train_run(config, tmp_path / "run", data=data)
    return tmp_path / "run", config, data


@pytest.mark.parametrize("damage", ["{\"segments\": [", "[1, 2]"])
def test_a_resume_refuses_a_damaged_run_json_naming_it_and_the_fix(interrupted_run, monkeypatch, damage):
    """It resumed, rewrote run.json with one segment and skipped the input files' sha256 check."""
    run, config, data = interrupted_run
    (run / "run.json").write_text(damage)

    def refuse(*args, **kwargs):
        raise AssertionError("a run with a damaged run.json was trained")

    monkeypatch.setattr(Trainer, "__init__", refuse)
    with pytest.raises(DataError) as refused:
        train_run(config, run, resume=True, data=data)
    message = str(refused.value)
    assert str(run / "run.json") in message and "restore it" in message and "without --resume" in message
    assert (run / "run.json").read_text() == damage


def test_a_resume_without_run_json_beside_checkpoints_says_what_was_lost(interrupted_run, caplog):
    run, config, data = interrupted_run
    (run / "run.json").unlink()
    with caplog.at_level(logging.WARNING):
        train_run(config, run, resume=True, data=data)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "run.json" in r.getMessage()]
    assert warned and "input files' sha256s are lost" in warned[0], caplog.text
    info = json.loads((run / "run.json").read_text())
    assert "sha256s are lost" in info[runinfo.HISTORY_LOST] and info[FINISHED]
    assert [s["ended_by"] for s in info["segments"]] == ["finished"]


def test_a_kill_at_the_runs_last_write_leaves_no_segment_said_finished(interrupted_run, monkeypatch):
    """Closing the segment and marking the run finished were two writes: killed between them, run.json said
    `finished` for a segment of a run that had not finished."""
    run, config, data = interrupted_run
    write, dead = runinfo.atomic_write_json, []

    def killed_at_finish(path, payload, *args, **kwargs):
        if dead or (Path(path).name == "run.json" and FINISHED in payload):
            dead.append(path)  # and nothing after it writes: no handler runs in a killed process
            raise Killed("run.json's last write")
        return write(path, payload, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(runinfo, "atomic_write_json", killed_at_finish)
        with pytest.raises(Killed):
            train_run(config, run, resume=True, data=data)
    assert finished_at(run) is None
    assert [s.get("ended_by") for s in _segments(run)] == ["interrupted", None]  # the second: killed
    train_run(config, run, resume=True, data=data)
    assert [s.get("ended_by") for s in _segments(run)] == ["interrupted", None, "finished"]
