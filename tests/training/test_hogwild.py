"""Hogwild workers: what they share, that concurrent steps compute what the same steps one at a time compute,
that they train, and that they refuse the settings they cannot serve."""

from __future__ import annotations

import io
import threading

import pytest
import torch
from tqdm import tqdm

from booktower.data.toy import checkerboard, random_prepared
from booktower.training.distributed import DistContext
from booktower.training.pipeline import build_model, train_run
from booktower.training.trainer import Trainer, epoch_generator


def _trainer(config, data, tmp_path, **kwargs) -> Trainer:
    model = build_model(config, data, torch.device("cpu"))
    return Trainer(model, data, config.training, config.seed, config.evaluation.ks, tmp_path, **kwargs)


def test_workers_share_the_model_and_draw_their_own_negatives(small_config, tmp_path):
    data = random_prepared(n_users=40, n_items=30, per_user=8)
    trainer = _trainer(small_config("training.hogwild_workers=2"), data, tmp_path)
    tasks = [worker.task for worker in trainer.hogwild.workers]
    assert all(task.model is trainer.model for task in tasks)
    assert tasks[0].sampler is not tasks[1].sampler and tasks[0].sampler is not trainer.sampler
    assert tasks[0].sampler.generator is not tasks[1].sampler.generator
    assert tasks[0].generator is not tasks[1].generator


def _epoch_0_generators(trainer: Trainer) -> None:
    """Every worker's generators as the trainer seeds them for epoch 0, drawn afresh."""
    seed = trainer.seed
    trainer.hogwild.set_generators([(epoch_generator(seed + 1, 0, k), epoch_generator(seed + 2, 0, k))
                                    for k in range(len(trainer.hogwild.workers))])


def _per_worker_losses(trainer: Trainer, batches: list[torch.Tensor]) -> list[list[float]]:
    """Each worker's step losses in order, the tasks run one after the other on the unchanged model."""
    _epoch_0_generators(trainer)
    losses = []
    for k, worker in enumerate(trainer.hogwild.workers):
        losses.append([float(sum(worker.task.losses(trainer.train.batch(index)).values()).detach())
                       for index in batches[k :: len(trainer.hogwild.workers)]])
    return losses


def test_concurrent_steps_compute_what_the_same_steps_compute_one_at_a_time(small_config, tmp_path, kernels):
    # A learning rate too small to move any weight: concurrent workers must then compute exactly the losses
    # of the same batches run one at a time. Any shared scratch memory or state between threads breaks this.
    data = random_prepared(n_users=200, n_items=120, per_user=12)
    config = small_config("training.hogwild_workers=3", "training.batch_size=32", "training.optimizer.lr=1e-30",
                          "training.optimizer.sparse_lr=1e-30", "model.history.pooling=recency")
    trainer = _trainer(config, data, tmp_path)
    batches = list(torch.randperm(trainer.train.n, generator=torch.Generator().manual_seed(0)).split(32))
    assert len(batches) >= 30
    seen: dict[str, list[float]] = {}

    def record(rows, total):
        seen.setdefault(threading.current_thread().name, []).append(float(total.detach()))

    trainer.hogwild.run_epoch(batches, trainer.train, trainer.optim, 0, record)
    concurrent = [seen[f"hogwild-{k}"] for k in range(3)]
    assert concurrent == _per_worker_losses(trainer, batches)


def test_hogwild_training_learns_the_checkerboard(small_config, tmp_path):
    # One step at a time ranks every reader's held-out book first here (test_trainer.py). The workers' order of
    # table updates varies with the machine's load: on a quiet machine every reader's MRR@10 was 1 in 8 runs of 8,
    # while with three test processes sharing the two cores one reader in 40 once fell outside the top 10 (1 run
    # of ~160).
    data = checkerboard(40)
    config = small_config("training.epochs=10", "training.batch_size=32", "model.user.use_id=true",
                          "training.hogwild_workers=2")
    result = train_run(config, tmp_path / "run", data=data)
    assert result.metrics["test"]["HR@10"] >= 0.95
    assert result.metrics["test"]["MRR@10"] >= 0.9


def test_run_steps_counts_every_row_once(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    trainer = _trainer(small_config("training.hogwild_workers=2", "training.batch_size=16"), data, tmp_path)
    batches = list(torch.arange(trainer.train.n).split(16))
    with tqdm(total=trainer.train.n, file=io.StringIO()) as bar:
        trainer.run_steps(batches, bar)
        assert bar.n == trainer.train.n
    assert trainer.step == len(batches)


def test_a_failing_worker_raises_in_the_caller(small_config, tmp_path):
    data = random_prepared(n_users=40, n_items=30, per_user=8)
    trainer = _trainer(small_config("training.hogwild_workers=2"), data, tmp_path)
    batches = [torch.arange(8), torch.tensor([trainer.train.n + 5])]  # the second is out of range
    with pytest.raises(IndexError):
        trainer.run_steps(batches, tqdm(disable=True))


def test_hogwild_refuses_torchrun_and_cuda(small_config, tmp_path):
    data = random_prepared(n_users=40, n_items=30, per_user=8)
    config = small_config("training.hogwild_workers=2")
    with pytest.raises(ValueError, match="hogwild_workers=1"):
        _trainer(config, data, tmp_path, dist=DistContext(rank=0, world_size=2))


def test_a_round_updates_the_tables_per_step_and_the_dense_weights_once_with_the_mean_gradient(small_config,
                                                                                              tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    # Tables frozen by a learning rate too small to move them: a worker finishing first would otherwise change
    # the tables the other one is reading (by design), and with them its dense gradients.
    config = small_config("training.hogwild_workers=2", "training.batch_size=32",
                          "training.optimizer.sparse_lr=1e-30")
    trainer = _trainer(config, data, tmp_path)
    batches = list(torch.arange(64).split(32))
    hogwild = trainer.hogwild
    expected = []  # each worker's dense gradients at the starting weights, drawn as run_epoch will draw them
    _epoch_0_generators(trainer)
    for k, worker in enumerate(hogwild.workers):
        total = sum(worker.task.losses(trainer.train.batch(batches[k])).values())
        expected.append(torch.autograd.grad(total, hogwild.dense, allow_unused=True))
    lazy, dense_optimizer = trainer.optim.optimizers
    applied = []  # the gradients the dense optimiser steps with (compared as gradients: Adam's first step is
    step = dense_optimizer.step  # about lr * sign(g), which float reordering can flip where g is near 0)

    def recording_step(*args, **kwargs):
        applied.append([None if p.grad is None else p.grad.clone() for p in hogwild.dense])
        return step(*args, **kwargs)

    dense_optimizer.step = recording_step
    _epoch_0_generators(trainer)
    trainer.run_steps(batches, tqdm(disable=True))
    assert {state["step"] for state in lazy.state.values()} == {2}  # the tables: once per step
    assert len(applied) == 1  # the MLPs: once per round
    first_alone_differs = False
    for got, a, b in zip(applied[0], *expected):
        assert (got is None) == (a is None)
        if got is not None:
            torch.testing.assert_close(got, (a + b) / 2, rtol=1e-4, atol=1e-6)
            first_alone_differs |= not torch.allclose(got, a, rtol=1e-4, atol=1e-6)
    assert first_alone_differs


def test_an_interrupted_hogwild_run_resumes_from_its_last_checkpoint(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    config = small_config("training.epochs=4", "training.hogwild_workers=2", "training.early_stopping.patience=0")

    def stop_after_epoch_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(config, data, tmp_path).fit(on_epoch=stop_after_epoch_2)
    resumed = _trainer(config, data, tmp_path)
    trained = []
    result = resumed.fit(resume=True, on_epoch=lambda row: trained.append(row["epoch"]))
    assert trained == [3, 4]  # epochs 1-2 came from the checkpoint
    assert [row["epoch"] for row in result.rows] == [1, 2, 3, 4]
    assert resumed.step == 4 * resumed.steps_per_epoch
