"""Refit on train + validation: merged in time order, trained for the selected epochs, scores the test only."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

from booktower.data.toy import random_prepared
from booktower.data.types import Interactions
from booktower.evaluation import evaluate_split
from booktower.evaluation.ranking import known_items
from booktower.models.io import load_model
from booktower.training.checkpoint import load_weights
from booktower.training.pipeline import build_model, train_run
from booktower.training.scoring import score_fn_for
from booktower.training.batching import merge_in_time_order
from booktower.training import trainer as trainer_module
from booktower.training.refit import refit, with_validation_in_train


def test_merge_keeps_each_readers_time_order_and_puts_ties_of_a_later_part_last():
    train = Interactions(np.array([0, 0, 1]), np.array([5, 6, 7]), np.array([10, 30, 10]))
    valid = Interactions(np.array([0, 1]), np.array([8, 9]), np.array([30, 20]))
    merged = merge_in_time_order(train, valid)
    assert merged.user.tolist() == [0, 0, 0, 1, 1]
    assert merged.item.tolist() == [5, 6, 8, 7, 9]  # item 8 ties item 6 in time but belongs to the later part
    assert merged.timestamp.tolist() == [10, 30, 30, 10, 20]


def test_validation_joins_train_and_nothing_else_changes():
    data = random_prepared(n_users=30, n_items=20, per_user=6)
    merged = with_validation_in_train(data)
    split = merged.split
    assert len(split.train) == len(data.split.train) + len(data.split.valid)
    assert split.test is data.split.test and split.valid is data.split.valid
    assert merged.item_features is data.item_features
    train_and_valid = known_items(data.n_users, data.split.train, data.split.valid)
    assert np.array_equal(known_items(data.n_users, split.train).values, train_and_valid.values)
    # each reader's validation item is now their newest training interaction
    last = np.r_[np.nonzero(np.diff(split.train.user))[0], len(split.train) - 1]
    assert np.array_equal(split.train.item[last], data.split.valid.item[np.argsort(data.split.valid.user)])


def test_refit_trains_the_selected_epochs_on_train_plus_validation_and_serves_that_model(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=30, per_user=8)
    config = small_config("training.epochs=3", "training.early_stopping.patience=5",
                          "training.refit_on_validation=true")
    result = train_run(config, tmp_path, data=data)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["refit_on_validation"] is True
    assert info["training_step"] == "eager"  # the small config: one step at a time, no workers, no CUDA graph
    refit_rows = list(csv.DictReader((tmp_path / "refit" / "epochs.csv").read_text().splitlines()))
    assert len(refit_rows) == result.fit.best_epoch
    assert not any(key.startswith("val_") for key in refit_rows[0])  # the refit never looks at validation
    # the served model is the refit, not the selected checkpoint; validation metrics come from the checkpoint
    selected = build_model(config, data, torch.device("cpu"))
    load_weights(result.fit.best_checkpoint, selected)
    served = load_model(tmp_path / "model")
    weight = "item_tower.ids.table.weight"
    assert not torch.equal(served.state_dict()[weight], selected.state_dict()[weight])
    # and the result hands back both, each under its own name (the held-out benchmarks score the served one)
    assert torch.equal(result.model.state_dict()[weight], served.state_dict()[weight])
    assert torch.equal(result.selected.state_dict()[weight], selected.state_dict()[weight])
    validation = evaluate_split(score_fn_for(selected, data, "validation"), data, "validation", config.evaluation.ks)
    test = evaluate_split(score_fn_for(served, data, "test"), data, "test", config.evaluation.ks)
    assert result.metrics["validation"]["NDCG@10"] == validation.metrics["NDCG@10"]
    assert result.metrics["test"]["NDCG@10"] == test.metrics["NDCG@10"]


def test_the_refit_keeps_the_selection_runs_schedule_length(small_config, tmp_path, monkeypatch):
    """Stopped at epoch 2 of a planned 4, the refit's cosine must run over 4 epochs' steps, not end at 0 after 2."""
    lengths = []
    real = trainer_module.build_optimizers

    def spy(model, config, total_steps, grad_clip):
        lengths.append(total_steps)
        return real(model, config, total_steps, grad_clip)

    monkeypatch.setattr(trainer_module, "build_optimizers", spy)
    data = random_prepared(n_users=40, n_items=20, per_user=6)
    config = small_config("training.epochs=4", "training.batch_size=32", "training.optimizer.schedule=cosine")
    refit(config, data, epochs=2, run_dir=tmp_path)
    steps_per_epoch = -(-(len(data.split.train) + len(data.split.valid)) // 32)
    assert lengths == [4 * steps_per_epoch]
    assert (tmp_path / "refit" / "epochs.csv").read_text().count("\n") == 3  # header + the 2 refit epochs


def test_reevaluating_a_refit_run_gives_its_metrics_again(small_config, tmp_path, monkeypatch):
    """`booktower evaluate --run` must score validation with the selected checkpoint, not the refit model that
    trained on the validation interactions."""
    from booktower.evaluation import run_eval

    data = random_prepared(n_users=60, n_items=30, per_user=8)
    config = small_config("training.epochs=3", "training.early_stopping.patience=5",
                          "training.refit_on_validation=true")
    metrics = train_run(config, tmp_path, data=data).metrics
    # toy data cannot be re-prepared from config.yaml: hand the run's own pieces to the loader seam
    monkeypatch.setattr(run_eval, "load_trained", lambda run_dir: (config, data, load_model(run_dir / "model")))
    _, again = run_eval.reevaluate_run(tmp_path)
    assert again.validation.metrics["NDCG@10"] == metrics["validation"]["NDCG@10"]
    assert again.test.metrics["NDCG@10"] == metrics["test"]["NDCG@10"]

