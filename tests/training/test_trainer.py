"""The trainer end to end on tiny data: the checkerboard contract, determinism, time-respecting histories."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import polars as pl
import torch

from booktower.data.toy import checkerboard, random_prepared
from booktower.training.batching import TrainingData
from booktower.training.pipeline import train_run
from booktower.training.graphed import small_gpu_batch_note


def _loss_columns(path) -> list[dict[str, str]]:
    timing = ("seconds", "examples_per_s", "peak_rss_mb")
    return [{k: v for k, v in row.items() if not k.endswith(timing)} for row in csv.DictReader(path.read_text().splitlines())]


def test_checkerboard_held_out_item_is_ranked_first_for_every_user(small_config, tmp_path):
    data = checkerboard(40)
    # Reader IDs on: in the checkerboard, books 0 and 1 open almost every reading order, so a history-only reader
    # tower learns them as "what people read first" rather than as members of their parity.
    config = small_config("training.epochs=8", "training.batch_size=64", "model.user.use_id=true")
    result = train_run(config, tmp_path / "run", data=data)
    per_user = pl.read_parquet(tmp_path / "run" / "per_user_test.parquet")
    assert len(per_user) == 40
    assert per_user["rank"].to_list() == [1] * 40
    assert result.metrics["test"]["HR@10"] == 1.0


def test_same_seed_gives_identical_runs(small_config, tmp_path):
    data = random_prepared(n_users=80, n_items=50, per_user=10)
    config = small_config("training.epochs=2", "model.history.pooling=attention", "training.loss.cal_weight=1.0",
                          "model.user.id_dropout=0.2", "model.user.dropout=0.1")
    first = train_run(config, tmp_path / "a", data=data)
    second = train_run(config, tmp_path / "b", data=data)
    assert first.metrics == second.metrics
    assert _loss_columns(tmp_path / "a" / "epochs.csv") == _loss_columns(tmp_path / "b" / "epochs.csv")
    other = train_run(small_config("training.epochs=2", "seed=7", "model.history.pooling=attention",
                                   "training.loss.cal_weight=1.0"), tmp_path / "c", data=data)
    assert _loss_columns(tmp_path / "a" / "epochs.csv") != _loss_columns(tmp_path / "c" / "epochs.csv")
    assert other.metrics["test"].keys() >= {"HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20", "HR@50", "NDCG@50",
                                           "coverage@10", "coverage@20", "coverage@50"}


def test_run_layout_and_bce_popularity_variant(small_config, tmp_path):
    data = random_prepared(n_users=50, n_items=30, per_user=8)
    config = small_config("training.epochs=2", "training.loss.main=bce", "training.negatives.sampler=popularity",
                          "model.fusion=gate", "training.optimizer.schedule=cosine")
    train_run(config, tmp_path, data=data)
    for name in ("config.yaml", "run.json", "data_summary.json", "epochs.csv", "metrics.json",
                 "model/model.safetensors", "model/model.json", "vocab/users.parquet", "vocab/items.parquet",
                 "checkpoints/best/state.json", "checkpoints/last/optimizer.safetensors"):
        assert (tmp_path / name).exists(), name
    rows = list(csv.DictReader((tmp_path / "epochs.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss_main", "loss_amm_item", "val_NDCG@20", "train_seconds", "examples_per_s"} <= set(rows[0])
    assert "loss_amm_user" not in rows[0]  # no a_u by default (model.dat.augment_users)
    # the hardware beside the numbers: another kind of CPU rounds differently, so it is part of a run's identity
    machine = json.loads((tmp_path / "run.json").read_text())["machine"]
    assert machine["logical_cores"] == os.cpu_count()
    assert machine["cpu"] and machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ("gpus" in machine) == torch.cuda.is_initialized()


def test_history_windows_hold_only_earlier_items_of_the_same_user():
    data = random_prepared(n_users=30, n_items=40, per_user=12)
    train = data.split.train
    td = TrainingData(train, data.n_users, data.n_items, max_history=5, device=torch.device("cpu"))
    batch = td.batch(torch.arange(td.n))
    users, items = td.users.numpy(), td.items.numpy()
    for j in range(td.n):
        same_user = np.flatnonzero(users == users[j])
        earlier = items[same_user[same_user < j]][-5:]
        row = batch.history[j].numpy()
        assert list(row[row >= 0]) == list(earlier)
        assert (row[: 5 - len(earlier)] == -1).all()


def test_small_gpu_batch_note_only_for_a_small_batch_on_a_gpu():
    note = small_gpu_batch_note("cuda", 1024)
    assert note is not None and "1,024" in note and "amazon-books-2014-gpu.yaml" in note
    assert small_gpu_batch_note("cuda", 8192) is None
    assert small_gpu_batch_note("cpu", 1024) is None  # the CPU is compute-bound at any batch


def _scripted_validation(monkeypatch, values: list[float]) -> None:
    """Validation gives `values` in turn as val NDCG@20 (the default early-stopping metric)."""
    from booktower.training.trainer import Trainer

    given = iter(values)
    monkeypatch.setattr(Trainer, "_validate", lambda self: {"val_NDCG@20": next(given)})


def test_an_early_stop_says_so_and_which_weights_the_test_uses(small_config, tmp_path, monkeypatch, caplog):
    import logging

    _scripted_validation(monkeypatch, [0.5, 0.6, 0.55])
    data = random_prepared(n_users=50, n_items=30, per_user=8)
    config = small_config("training.epochs=20", "training.early_stopping.patience=1")
    with caplog.at_level(logging.INFO, logger="booktower"):
        result = train_run(config, tmp_path / "run", data=data)
    assert result.fit.stopped_early and result.fit.best_epoch == 2
    stops = [r.getMessage() for r in caplog.records if "stopped early" in r.getMessage()]
    assert stops == ["stopped early after epoch 3 of 20: val NDCG@20 has not improved on epoch 2's 0.6000 "
                     "for 1 validation (training.early_stopping.patience=1); the test uses epoch 2's weights"]


def test_an_early_stop_before_a_refit_names_the_refit(small_config, tmp_path, monkeypatch, caplog):
    import logging

    _scripted_validation(monkeypatch, [0.5, 0.6, 0.55, 0.58])
    data = random_prepared(n_users=50, n_items=30, per_user=8)
    config = small_config("training.epochs=20", "training.early_stopping.patience=2",
                          "training.refit_on_validation=true")
    with caplog.at_level(logging.INFO, logger="booktower"):
        train_run(config, tmp_path / "run", data=data)
    (stop,) = [r.getMessage() for r in caplog.records if "stopped early" in r.getMessage()]
    assert stop.startswith("stopped early after epoch 4 of 20: val NDCG@20 has not improved on epoch 2's 0.6000 "
                           "for 2 validations (training.early_stopping.patience=2); the test uses a model refit "
                           "on train + validation for 2 epochs")


def test_a_run_that_trains_every_planned_epoch_says_nothing_of_stopping(small_config, tmp_path, caplog):
    import logging

    data = random_prepared(n_users=50, n_items=30, per_user=8)
    with caplog.at_level(logging.INFO, logger="booktower"):
        train_run(small_config("training.epochs=2", "training.early_stopping.patience=5"), tmp_path, data=data)
    assert not [r for r in caplog.records if "stopped early" in r.getMessage()]
