"""One writer per run folder: a second `train` (or `evaluate`, `ensemble`) into a folder another process is
writing is refused at once, naming that process; a killed holder blocks nothing; under torchrun rank 0 holds
the lock and its refusal reaches every rank."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from booktower.data.toy import random_prepared
from booktower.training.distributed import DistContext
from booktower.training.pipeline import train_run
from booktower.training.run_folder import hold_run_folder
from booktower.training.trainer import Trainer
from booktower.utils.folder_lock import RunInUse, lock_path

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset

HOLDER = """
import sys, time
from booktower.utils.folder_lock import run_lock
with run_lock(sys.argv[1], "train"):
    print("held", flush=True)
    time.sleep(300)
"""


class LockHolder:
    """Another process that holds `folder`'s lock (as a `train` would) until it is killed."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout.readline().strip() == "held"

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def lock_holder():
    holders: list[LockHolder] = []

    def hold(folder: Path) -> LockHolder:
        holders.append(LockHolder(folder))
        return holders[-1]

    yield hold
    for holder in holders:
        if holder.process.poll() is None:
            holder.kill()


def _flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


def test_a_second_training_while_the_first_trains_is_refused_and_the_first_ends_as_itself(small_config, tmp_path,
                                                                                         monkeypatch):
    """Both trainings once exited 0: the second wiped the first's checkpoints while it trained."""
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    config = small_config("training.epochs=2", "training.early_stopping.patience=10")
    run = tmp_path / "run"
    in_epoch, go_on = threading.Event(), threading.Event()
    train_epoch = Trainer._train_epoch

    def paused(self):
        if self.epoch == 1 and threading.current_thread().name == "first":
            in_epoch.set()
            assert go_on.wait(120)
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "_train_epoch", paused)
    first: dict[str, Any] = {}
    thread = threading.Thread(name="first", target=lambda: first.update(result=train_run(config, run, data=data)))
    thread.start()
    try:
        assert in_epoch.wait(120)
        before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
        with pytest.raises(RunInUse) as refused:
            train_run(config.model_copy(update={"seed": 5}), run, data=data)
        assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before, "the refused one wrote nothing"
    finally:
        go_on.set()
        thread.join(300)
    message = str(refused.value)
    assert str(run) in message and f"pid {os.getpid()}" in message and "another --output-dir" in message
    assert first["result"].metrics["test"] == json.loads((run / "metrics.json").read_text())["test"]
    assert [s["ended_by"] for s in json.loads((run / "run.json").read_text())["segments"]] == ["finished"]
    train_run(config, run, data=data)  # the lock went with the first training


def test_train_into_a_folder_another_process_holds_is_refused_naming_it(tmp_path, lock_holder):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    holder = lock_holder(run)
    for extra in ([], ["--resume"]):
        outcome = CliRunner().invoke(app, ["train", "--config", str(config), "-o", str(run), *extra])
        said = _flat(outcome.output)
        assert outcome.exit_code == 2 and "Traceback" not in outcome.output, outcome.output
        assert f"{run} is in use" in said and f"pid {holder.pid}" in said and "-c" in said, said
    assert not run.exists() or not any(run.iterdir())


def test_a_killed_holder_leaves_no_lock_that_blocks(small_config, tmp_path, lock_holder):
    data = random_prepared(n_users=30, n_items=20, per_user=5)
    run = tmp_path / "run"
    lock_holder(run).kill()  # SIGKILL: no cleanup ran, its record is still in the lock file
    assert lock_path(run).read_text()
    train_run(small_config("training.epochs=1"), run, data=data)
    assert (run / "metrics.json").is_file()
    assert lock_path(run).read_text() == "", "the finished training's record went with its lock"


def test_evaluate_and_ensemble_of_a_held_folder_are_refused(small_config, tmp_path, lock_holder):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", "-c", str(config), "-o", str(run), "--set",
                                    "training.epochs=1"]).exit_code == 0
    metrics = (run / "metrics.json").read_bytes()
    holder = lock_holder(run)
    evaluated = CliRunner().invoke(app, ["evaluate", "--run", str(run)])
    assert evaluated.exit_code == 2 and f"pid {holder.pid}" in _flat(evaluated.output), evaluated.output
    assert (run / "metrics.json").read_bytes() == metrics
    out = tmp_path / "ensemble"
    holder = lock_holder(out)
    combined = CliRunner().invoke(app, ["ensemble", str(run), str(run), "-o", str(out)])
    assert combined.exit_code == 2 and f"{out} is in use" in _flat(combined.output), combined.output
    assert not out.exists()


@dataclass(frozen=True)
class _Rank(DistContext):
    """A rank of a torchrun run, whose broadcasts return rank 0's `answer` (rank 0 itself: its own value)."""

    answer: Any = None
    sent: list = None  # type: ignore[assignment]

    def broadcast(self, value: Any) -> Any:
        self.sent.append(value)
        return value if self.is_main else self.answer


def test_under_torchrun_rank_0_alone_holds_the_lock_and_its_refusal_reaches_every_rank(tmp_path, lock_holder):
    run = tmp_path / "run"
    other = _Rank(rank=1, world_size=2, sent=[])
    with hold_run_folder(run, other, "train"):  # rank 1 takes no lock (its node may not even have the folder)
        assert not lock_path(run).exists()
    holder = lock_holder(run)
    main = _Rank(rank=0, world_size=2, sent=[])
    with pytest.raises(RunInUse):
        with hold_run_folder(run, main, "train"):
            pass
    assert main.sent and f"pid {holder.pid}" in main.sent[0]  # what rank 0 tells the others
    told = _Rank(rank=1, world_size=2, answer=main.sent[0], sent=[])
    with pytest.raises(RunInUse) as refused:
        with hold_run_folder(run, told, "train"):
            pass
    assert f"pid {holder.pid}" in str(refused.value)


def test_a_checkpoint_save_removes_a_killed_saves_folder_only_while_it_holds_the_run_lock(tmp_path):
    """Unlocked (no lock file could be made), another training may be writing the same folder: its `.last.new.*`
    folder in the making was deleted by each save of the other."""
    import torch

    from booktower.config import load_config
    from booktower.training.checkpoint import find_checkpoint, save_checkpoint
    from booktower.training.pipeline import build_model
    from booktower.utils.folder_lock import run_lock

    model = build_model(load_config(None), random_prepared(n_users=20, n_items=15, per_user=5), torch.device("cpu"))
    run = tmp_path / "run"
    theirs = run / "checkpoints" / ".last.new.a1b2c3d4"
    theirs.mkdir(parents=True)
    save_checkpoint(run / "checkpoints" / "last", model, [torch.optim.Adam(model.parameters())], {"epoch": 1})
    assert theirs.is_dir() and find_checkpoint(run / "checkpoints" / "last") is not None
    with run_lock(run, "train"):
        save_checkpoint(run / "checkpoints" / "last", model, [torch.optim.Adam(model.parameters())], {"epoch": 2})
    assert not theirs.exists()


def test_a_training_whose_run_folder_parent_is_read_only_locks_inside_it_and_keeps_that_lock(
        small_config, tmp_path, monkeypatch):
    """A run trained over an earlier one in such a folder removes the earlier outputs, never the held lock."""
    from booktower.utils import folder_lock

    data = random_prepared(n_users=30, n_items=20, per_user=5)
    run = tmp_path / "run"
    run.mkdir()
    real = folder_lock.open_lock_file
    monkeypatch.setattr(folder_lock, "open_lock_file", lambda path: None if path == lock_path(run) else real(path))
    for seed in (1, 2):  # the second replaces the first run's outputs
        train_run(small_config("training.epochs=1", f"seed={seed}"), run, data=data)
        assert (run / folder_lock.INSIDE_LOCK).is_file() and (run / "metrics.json").is_file()
    assert not lock_path(run).exists()


def test_resume_of_a_held_folder_without_config_is_said_in_use_not_to_hold_no_config(tmp_path, lock_holder):
    """`train -o RUN --resume` read RUN/config.yaml before taking the lock: while another training was still
    starting RUN (no config.yaml yet), it said the folder holds no config."""
    from typer.testing import CliRunner

    from booktower.cli.app import app

    run = tmp_path / "run"
    holder = lock_holder(run)
    outcome = CliRunner().invoke(app, ["train", "-o", str(run), "--resume"])
    said = _flat(outcome.output)
    assert outcome.exit_code == 2 and f"{run} is in use" in said and f"pid {holder.pid}" in said, said
    assert "no config.yaml" not in said


def test_an_ensemble_into_a_filled_or_held_folder_is_refused_before_any_member_trains(tmp_path, lock_holder,
                                                                                      monkeypatch):
    from typer.testing import CliRunner

    from booktower.cli.app import app
    from booktower.training import ensemble_run

    config = write_dataset(tmp_path / "data", 12)
    trained: list[Any] = []
    monkeypatch.setattr(ensemble_run, "train_members", lambda *args, **kwargs: trained.append(args) or [])
    out = tmp_path / "ens"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    command = ["ensemble", "--config", str(config), "--seeds", "1,2", "-o", str(out)]
    filled = CliRunner().invoke(app, command)
    assert filled.exit_code == 2 and "the output folder is not empty" in _flat(filled.output), filled.output
    (out / "notes.txt").unlink()
    holder = lock_holder(out)
    held = CliRunner().invoke(app, command)
    assert held.exit_code == 2 and f"pid {holder.pid}" in _flat(held.output), held.output
    assert trained == [] and not (tmp_path / "ens-members").exists()


def test_reading_a_run_another_process_is_writing_says_so_not_that_it_was_interrupted(tmp_path, lock_holder):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config.read_text())  # a training that has started, no model yet
    holder = lock_holder(run)
    for args in (["export", "--run", str(run), "-o", str(tmp_path / "b")], ["report", "--run", str(run)],
                 ["compare", str(run), str(run)]):
        said = _flat(CliRunner().invoke(app, args).output)
        assert _flat(f"{run} is being written right now by pid {holder.pid}") in said, (args, said)
        assert "--resume" not in said
    holder.kill()  # and waited for
    said = _flat(CliRunner().invoke(app, ["export", "--run", str(run), "-o", str(tmp_path / "b")]).output)
    assert _flat("interrupted, it seems") in said and "--resume" in said
