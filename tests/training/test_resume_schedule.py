"""Resume edge cases: a checkpoint counted in another world size's steps, and a stop between `best` and `last`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from booktower.data.toy import random_prepared
from booktower.training.pipeline import build_model
from booktower.training.trainer import Trainer


class Stop(Exception):
    """Stands for the SIGINT that ends a run after an epoch's checkpoint."""


def _trainer(config, data, run_dir) -> Trainer:
    return Trainer(build_model(config, data, torch.device("cpu")), data, config.training, config.seed,
                   config.evaluation.ks, run_dir)


def _stop_after(epoch: int):
    def on_epoch(row):
        if row["epoch"] == epoch:
            raise Stop

    return on_epoch


def _trained_columns(rows) -> list[tuple[float, float]]:
    """Each epoch's learning-rate factor and training loss: an exact resume reproduces them bit for bit."""
    return [(row["lr_factor"], row["loss_total"]) for row in rows]


@pytest.fixture
def cosine_run(small_config, tmp_path):
    """(config, data, the uninterrupted run's rows) of a 4-epoch cosine schedule, 3 steps an epoch."""
    data = random_prepared(n_users=60, n_items=40, per_user=8)
    config = small_config("training.epochs=4", "training.batch_size=128", "training.optimizer.schedule=cosine")
    trainer = _trainer(config, data, tmp_path / "full")
    rows = trainer.fit().rows
    assert trainer.steps_per_epoch >= 2  # so that another world size counts other steps
    return config, data, rows


@pytest.mark.parametrize("steps_ratio", [2.0, 0.5], ids=["fewer-ranks-before", "more-ranks-before"])
def test_a_resume_under_another_world_size_continues_the_schedule_where_it_stopped(cosine_run, tmp_path,
                                                                                  steps_ratio):
    """A checkpoint written with `steps_ratio` times this run's steps per epoch (world size 1 resumed under 2
    has 2x; 2 resumed under 1 has 0.5x): the resumed epochs take the uninterrupted run's learning rates, where
    reusing the saved step count jumped the cosine to ~0 (or rewound it)."""
    config, data, full_rows = cosine_run
    cut = tmp_path / "cut"
    with pytest.raises(Stop):
        _trainer(config, data, cut).fit(on_epoch=_stop_after(2))
    state_file = cut / "checkpoints" / "last" / "state.json"
    state = json.loads(state_file.read_text())
    state["step"] = int(state["step"] * steps_ratio)  # as counted under the other world size
    state_file.write_text(json.dumps(state))
    resumed = _trainer(config, data, cut)
    rows = resumed.fit(resume=True).rows
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert _trained_columns(rows) == _trained_columns(full_rows)
    assert resumed.step == 4 * resumed.steps_per_epoch


def test_a_stop_between_the_best_and_last_checkpoints_resumes_from_best(cosine_run, tmp_path, caplog):
    """Epoch 1 writes `best`, then `last`: a SIGINT between them leaves only `best`, which holds the epoch's
    whole state; the resume continues from it instead of starting again."""
    config, data, full_rows = cosine_run
    cut = tmp_path / "cut"
    with pytest.raises(Stop):
        _trainer(config, data, cut).fit(on_epoch=_stop_after(1))
    shutil.rmtree(cut / "checkpoints" / "last")
    with caplog.at_level("INFO"):
        rows = _trainer(config, data, cut).fit(resume=True).rows
    assert "starting from scratch" not in caplog.text
    assert "resumed from" in caplog.text and "after epoch 1" in caplog.text
    assert _trained_columns(rows) == _trained_columns(full_rows)
