"""run.json keeps a run's history across interruptions: one segment per start or resume (command, world size,
device, times, the epochs it trained), timings added up over them, and the report's Run table says how many
processes trained and through which world sizes a resumed run went."""

from __future__ import annotations

import json

import pytest

from booktower.data.toy import random_prepared
from booktower.training.pipeline import train_run
from booktower.training.trainer import Trainer


def _interrupt_after(monkeypatch, epoch: int) -> None:
    """A Ctrl-C in the epoch after `epoch`, which had finished and been checkpointed."""
    train_epoch = Trainer._train_epoch

    def stop_in_next_epoch(self):
        if self.epoch == epoch:
            raise KeyboardInterrupt
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_next_epoch)


def _slow_epochs(monkeypatch, seconds: float) -> None:
    """Each epoch takes at least `seconds`, so that the timings are far above their rounding."""
    import time

    train_epoch = Trainer._train_epoch

    def slow(self):
        time.sleep(seconds)
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "_train_epoch", slow)


def test_an_interrupted_then_resumed_run_keeps_both_segments_and_adds_their_time(small_config, tmp_path,
                                                                                  monkeypatch):
    data = random_prepared(n_users=40, n_items=25, per_user=6)
    config = small_config("training.epochs=3", "training.early_stopping.patience=10",
                          "training.refit_on_validation=true")
    run = tmp_path / "run"
    _slow_epochs(monkeypatch, 0.3)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train_run(config, run, data=data)
    first = json.loads((run / "run.json").read_text())["segments"]
    assert len(first) == 1 and first[0]["ended_by"] == "interrupted" and first[0]["epochs"] == [1, 2]
    assert first[0]["timings_seconds"]["fit"] >= 0.6  # two epochs of it, recorded although the run stopped

    train_run(config, run, resume=True, data=data)
    info = json.loads((run / "run.json").read_text())
    segments = info["segments"]
    assert [s["world_size"] for s in segments] == [1, 1] and info["world_size"] == 1
    assert segments[0]["epochs"] == [1, 2] and segments[1]["epochs"] == [3]
    assert segments[1]["refit_epochs"] == [1, 2, 3] and segments[1]["ended_by"] == "finished"
    assert all(s["started"] and s["ended"] and s["device"] == "cpu" and s["command"] for s in segments)
    fit = [s["timings_seconds"]["fit"] for s in segments]
    assert info["timings_seconds"]["fit"] == pytest.approx(sum(fit), abs=0.01)
    assert info["timings_seconds"]["fit"] >= 0.9  # all three epochs, not the resumed segment's one
    assert info["timings_seconds"]["prepare"] == pytest.approx(sum(s["timings_seconds"]["prepare"]
                                                                   for s in segments), abs=0.01)
    assert "finished" in info and "command" in info and "working_directory" in info
    report = " ".join((run / "report.md").read_text().split())
    assert "| world size (processes) | 1; resumed 1 time |" in report
    assert "(world size 1, cpu, epochs 1-2, interrupted)" in report
    assert "epochs 3, refit epochs 1-3" in report


def test_the_report_names_the_world_sizes_a_resumed_run_went_through(small_config, tmp_path, monkeypatch):
    """A run started on 2 processes and resumed on one: its first segment is what rank 0 of the 2-process run
    wrote (torchrun itself is exercised in test_distributed)."""
    data = random_prepared(n_users=40, n_items=25, per_user=6)
    config = small_config("training.epochs=2", "training.early_stopping.patience=10")
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            train_run(config, run, data=data)
    info = json.loads((run / "run.json").read_text())
    info["segments"][0].update(world_size=2, command=["torchrun", "--nproc_per_node=2", "-m", "booktower", "train"])
    (run / "run.json").write_text(json.dumps(info))
    train_run(config, run, resume=True, data=data)
    report = " ".join((run / "report.md").read_text().split())
    assert "resumed 1 time, world sizes 2 -> 1" in report
    assert "the global batch is world size x that" in report
    assert "| command | torchrun --nproc_per_node=2 -m booktower train (world size 2, cpu, epochs 1" in report
    assert json.loads((run / "run.json").read_text())["world_size"] == 1  # the key others read: the last segment
