"""An interrupted run resumes only on the files it started on: the input files' sha256s and the split are recorded
before the first epoch, so a resume after the catalogue or the log changed is refused, naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from booktower.config import load_config
from booktower.data.errors import DataError
from booktower.training.pipeline import train_run
from booktower.training.trainer import Trainer
from booktower.utils.runinfo import finished_at

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


def _interrupted_run(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    config = write_dataset(tmp_path / "data", 16)
    real = Trainer._train_epoch

    def interrupted(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(load_config(config, ["training.epochs=3"]), tmp_path / "run")
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    return config, tmp_path / "run"


def test_a_resume_after_the_catalogue_changed_is_refused_and_works_once_it_is_back(tmp_path, monkeypatch):
    config, run = _interrupted_run(tmp_path, monkeypatch)
    items = tmp_path / "data" / "items.csv"
    original = items.read_text()
    items.write_text(original + "\n")  # the same rows, other bytes
    with pytest.raises(DataError, match=r"--resume: .*input .*items\.csv changed"):
        train_run(load_config(run / "config.yaml"), run, resume=True)
    items.write_text(original)
    train_run(load_config(run / "config.yaml"), run, resume=True)
    assert finished_at(run) is not None


def test_a_resume_after_a_read_moved_in_time_is_refused(tmp_path, monkeypatch):
    config, run = _interrupted_run(tmp_path, monkeypatch)
    log = tmp_path / "data" / "interactions.csv"
    header, first, *rest = log.read_text().splitlines()
    user, item, timestamp, *others = first.split(",")
    log.write_text("\n".join([header, ",".join([user, item, str(int(timestamp) + 10**9), *others]), *rest]) + "\n")
    with pytest.raises(DataError, match=r"--resume: .*interactions\.csv changed"):
        train_run(load_config(run / "config.yaml"), run, resume=True)
