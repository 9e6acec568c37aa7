"""Worker threads: what they share, that a round computes exactly what the same steps computed one after another
compute, that a run reproduces bit for bit, that they train, and that they refuse what they cannot serve."""

from __future__ import annotations

import io

import pytest
import torch
from tqdm import tqdm

from booktower.config import load_config
from booktower.data.toy import checkerboard, random_prepared
from booktower.training.distributed import DistContext
from booktower.training.pipeline import build_model, train_run
from booktower.training.trainer import Trainer, epoch_generator


def _trainer(config, data, tmp_path, **kwargs) -> Trainer:
    model = build_model(config, data, torch.device("cpu"))
    return Trainer(model, data, config.training, config.seed, config.evaluation.ks, tmp_path, **kwargs)


def test_workers_share_the_model_and_draw_their_own_negatives(small_config, tmp_path):
    data = random_prepared(n_users=40, n_items=30, per_user=8)
    trainer = _trainer(small_config("training.workers=2"), data, tmp_path)
    tasks = [worker.task for worker in trainer.workers.workers]
    assert all(task.model is trainer.model for task in tasks)
    assert tasks[0].sampler is not tasks[1].sampler and tasks[0].sampler is not trainer.sampler
    assert tasks[0].sampler.generator is not tasks[1].sampler.generator
    assert tasks[0].generator is not tasks[1].generator


def _epoch_0_generators(trainer: Trainer) -> None:
    """Every worker's generators as the trainer seeds them for epoch 0, drawn afresh."""
    seed = trainer.seed
    trainer.workers.set_generators([(epoch_generator(seed + 1, 0, k), epoch_generator(seed + 2, 0, k))
                                    for k in range(len(trainer.workers.workers))])


def _serial_rounds(trainer: Trainer, batches: list[torch.Tensor]) -> list[float]:
    """The reference: the same rounds one step at a time in this thread, on the optimisers' ordinary paths. Each
    round's gradients all at the round's weights; the dense weights step once with their mean; then each batch's
    table gradients, in worker order, as a whole LazyAdam step. Returns the step losses in step order."""
    workers = trainer.workers
    _epoch_0_generators(trainer)
    losses, n = [], len(workers.workers)
    for start in range(0, len(batches), n):
        rounds = []
        for worker, index in zip(workers.workers, batches[start : start + n]):
            total = sum(worker.task.losses(trainer.train.batch(index)).values())
            rounds.append(torch.autograd.grad(total, workers.params, allow_unused=True))
            losses.append(float(total.detach()))
        step = trainer.step + len(rounds) - 1
        for j, param in enumerate(workers.dense):
            given = [grads[workers.n_sparse + j] for grads in rounds if grads[workers.n_sparse + j] is not None]
            param.grad = None if not given else torch.stack(given).sum(0).div_(len(rounds))
        trainer.optim.step(step, part="dense")
        trainer.optim.zero_grad()
        tables = trainer.optim.sparse_optimizer()
        for grads in rounds:
            for param, grad in zip(workers.sparse, grads):
                param.grad = grad
            tables.step()
            tables.zero_grad()
        trainer.step += len(rounds)
    return losses


def test_a_round_computes_exactly_what_its_steps_one_after_another_compute(small_config, tmp_path, kernels):
    # Three workers, so each table's rows split three ways (r % 3), and an epoch whose last round is short.
    data = random_prepared(n_users=200, n_items=120, per_user=12)
    config = small_config("training.workers=3", "training.batch_size=32", "model.history.pooling=recency")
    threaded, serial = _trainer(config, data, tmp_path / "a"), _trainer(config, data, tmp_path / "b")
    batches = list(torch.randperm(threaded.train.n, generator=torch.Generator().manual_seed(0)).split(32))[:62]
    assert len(batches) == 62 and len(batches) % 3
    seen: list[float] = []
    _epoch_0_generators(threaded)
    threaded.workers.run_epoch(batches, threaded.train, threaded.optim, 0, lambda rows, total: seen.append(
        float(total)))
    assert seen == _serial_rounds(serial, batches)
    for (name, got), want in zip(threaded.model.state_dict().items(), serial.model.state_dict().values()):
        assert torch.equal(got, want), name  # bit for bit: the same sums in the same order


def test_a_run_with_workers_reproduces_bit_for_bit(small_config, tmp_path):
    data = random_prepared(n_users=80, n_items=50, per_user=10)
    config = small_config("training.workers=2", "training.epochs=2", "training.batch_size=16")
    first, second = _trainer(config, data, tmp_path / "a"), _trainer(config, data, tmp_path / "b")
    rows = [trainer.fit().rows for trainer in (first, second)]
    assert [(r["loss_total"], r["val_NDCG@10"]) for r in rows[0]] == [
        (r["loss_total"], r["val_NDCG@10"]) for r in rows[1]]
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_old_key_hogwild_workers_still_reads_as_workers(caplog):
    with caplog.at_level("WARNING"):
        assert load_config(None, ["training.hogwild_workers=2"]).training.workers == 2
    assert "renamed training.workers" in caplog.text
    with pytest.raises(ValueError, match="set only workers"):
        load_config(None, ["training.hogwild_workers=2", "training.workers=2"])


def test_worker_training_learns_the_checkerboard(small_config, tmp_path):
    # One step at a time ranks every reader's held-out book first here (test_trainer.py). The workers' order of
    # table updates varies with the machine's load: on a quiet machine every reader's MRR@10 was 1 in 8 runs of 8,
    # while with three test processes sharing the two cores one reader in 40 once fell outside the top 10 (1 run
    # of ~160).
    data = checkerboard(40)
    config = small_config("training.epochs=10", "training.batch_size=32", "model.user.use_id=true",
                          "training.workers=2")
    result = train_run(config, tmp_path / "run", data=data)
    assert result.metrics["test"]["HR@10"] >= 0.95
    assert result.metrics["test"]["MRR@10"] >= 0.9


def test_run_steps_counts_every_row_once(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    trainer = _trainer(small_config("training.workers=2", "training.batch_size=16"), data, tmp_path)
    batches = list(torch.arange(trainer.train.n).split(16))
    with tqdm(total=trainer.train.n, file=io.StringIO()) as bar:
        trainer.run_steps(batches, bar)
        assert bar.n == trainer.train.n
    assert trainer.step == len(batches)


def test_each_round_reports_where_its_time_went_when_asked(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    trainer = _trainer(small_config("training.workers=2", "training.batch_size=16"), data, tmp_path)
    batches = list(torch.arange(trainer.train.n).split(16))[:5]  # three rounds, the last with one batch
    trainer.run_steps(batches[:2], tqdm(disable=True))
    assert trainer.workers.timings is None  # nothing recorded unless asked
    trainer.workers.timings = []
    trainer.run_steps(batches, tqdm(disable=True))
    rounds = trainer.workers.timings
    assert len(rounds) == 3
    for r in rounds:
        assert len(r.gradients) == len(r.tables) == 2
        assert min(r.gradients + r.tables + [r.spread, r.dense]) >= 0
        # every worker's gradients, the dense step (after the last worker's gradients) and its table phase
        # follow one another inside the round
        assert r.total >= max(g + r.dense + t for g, t in zip(r.gradients, r.tables))
        assert r.spread <= r.total
    assert rounds[-1].gradients[1] < rounds[-1].gradients[0]  # worker 1 had no batch in the last round


def test_a_failing_worker_raises_in_the_caller(small_config, tmp_path):
    data = random_prepared(n_users=40, n_items=30, per_user=8)
    trainer = _trainer(small_config("training.workers=2"), data, tmp_path)
    batches = [torch.arange(8), torch.tensor([trainer.train.n + 5])]  # the second is out of range
    with pytest.raises(IndexError):
        trainer.run_steps(batches, tqdm(disable=True))


def test_workers_are_ignored_with_a_warning_under_torchrun(small_config, tmp_path, caplog, monkeypatch):
    data = random_prepared(n_users=40, n_items=30, per_user=8)
    config = small_config("training.workers=2")
    monkeypatch.setattr(Trainer, "_wrap_ddp", lambda self: self.task.losses)  # no process group here
    with caplog.at_level("WARNING", logger="booktower.training.trainer"):
        trainer = _trainer(config, data, tmp_path, dist=DistContext(rank=0, world_size=2))
    assert trainer.workers is None
    assert "training.workers=2 is ignored under torchrun" in caplog.text


def test_an_interrupted_run_with_workers_resumes_from_its_last_checkpoint(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    config = small_config("training.epochs=4", "training.workers=2", "training.early_stopping.patience=0")

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


def test_the_mean_of_a_rounds_gradients_counts_a_missing_one_as_zeros():
    from booktower.training.workers import _mean_gradients

    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    assert torch.equal(_mean_gradients([[a.clone()], [b.clone()]])[0], torch.tensor([2.0, 4.0]))  # fused path
    mixed = _mean_gradients([[a.clone(), None, None], [b.clone(), torch.tensor([4.0]), None]])
    assert torch.equal(mixed[0], torch.tensor([2.0, 4.0]))
    assert torch.equal(mixed[1], torch.tensor([2.0]))  # one batch reached it: (4 + 0) / 2
    assert mixed[2] is None
