"""Hogwild workers on the CPU (`training.hogwild_workers`): Python threads each run whole training steps on one
core of one shared model (Recht et al., "Hogwild!", NIPS 2011; fastText and LightFM use several cores so).

Why: the amazon-books-2014 step is ~150 small operations and a few small matrix products, most of them too small
to split over two cores, so two threads inside each operation gain little over one (docs/benchmarks.md). Two
whole steps at once keep both cores busy.

The steps run in rounds of one batch per worker:
- The sparse embedding tables are updated Hogwild-style: each worker applies its step's table gradients as soon
  as its step ends, without waiting for the others, and the tables are read without a lock, so a step may read
  a row while another step updates it. No operation keeps a table for its backward, so this is allowed.
- The dense weights (the MLPs) are updated once per round, with the mean of the round's gradients, all computed
  at the same weights: as one step on the round's batches together. Hogwild-style updates of the dense weights
  too (each step's gradient then comes from weights one update old) slowed learning a lot on amazon-books-2014
  (validation NDCG@20 after 2 epochs 0.0228 against 0.0380, simulated on one thread), while one-update-old
  table gradients did not (0.0376), nor did the per-round dense update much (0.0365); docs/log.md.
- The sparse tables' optimiser steps under a lock, one worker at a time, and the dense one in the barrier's
  action while every worker waits: optimiser state is never written concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from booktower.data.samplers import NegativeSampler
from booktower.models.two_tower import TwoTower
from booktower.training.batching import TrainingData
from booktower.training.optim import Optimizers, sparse_parameters
from booktower.training.task import TrainTask
from booktower.utils.threads import one_thread_per_kernel

# progress(rows of a finished step, its loss), called under the lock after each step
Progress = Callable[[int, torch.Tensor], None]


@dataclass
class Worker:
    """One thread's task (its own negative sampler and dropout generator) and its share of the round."""

    task: TrainTask
    dense_grads: list[torch.Tensor | None] | None = None  # this round's, None: no batch this round
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # loss parts x rows over the epoch


class Hogwild:
    """Runs an epoch's batches on `len(samplers)` workers; in round r worker k takes batch r * W + k."""

    def __init__(self, model: TwoTower, task: TrainTask, samplers: list[NegativeSampler]) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        sparse = {id(p) for p in sparse_parameters(model)}
        self.is_sparse = [id(p) in sparse for p in self.params]
        self.dense = [p for p, is_sparse in zip(self.params, self.is_sparse) if not is_sparse]
        self.workers = [Worker(task.replica(model, sampler, None)) for sampler in samplers]
        self.lock = threading.Lock()

    def set_generators(self, generators: list[tuple[torch.Generator, torch.Generator]]) -> None:
        """Each worker's (negative sampler, dropout) generators for the coming epoch."""
        for worker, (negatives, dropout) in zip(self.workers, generators):
            worker.task.sampler.generator = negatives
            worker.task.generator = dropout

    def run_epoch(self, batches: list[torch.Tensor], data: TrainingData, optim: Optimizers, first_step: int,
                  progress: Progress) -> dict[str, torch.Tensor]:
        """Train on `batches` (index tensors into `data`), steps numbered from `first_step` for the learning-rate
        schedule; return the loss parts summed over rows."""
        n = len(self.workers)
        run = _Epoch(self, batches, data, optim, first_step, progress)
        with one_thread_per_kernel():  # threads started here run their kernels on one thread each
            threads = [threading.Thread(target=run.work, args=(k,), name=f"hogwild-{k}", daemon=True)
                       for k in range(n)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if run.failures:
            raise run.failures[0]
        sums: dict[str, torch.Tensor] = {}
        for worker in self.workers:
            for name, value in worker.sums.items():
                sums[name] = sums.get(name, 0.0) + value
            worker.sums = {}
        return sums


class _Epoch:
    """One epoch's shared state: the step counter, the round barrier (whose action is the dense update) and the
    first failure."""

    def __init__(self, hogwild: Hogwild, batches: list[torch.Tensor], data: TrainingData, optim: Optimizers,
                 first_step: int, progress: Progress) -> None:
        self.hogwild, self.batches, self.data, self.optim = hogwild, batches, data, optim
        self.step, self.progress = first_step, progress
        self.failures: list[BaseException] = []
        self.barrier = threading.Barrier(len(hogwild.workers), action=self._dense_step)

    def work(self, k: int) -> None:
        hogwild = self.hogwild
        worker, n = hogwild.workers[k], len(hogwild.workers)
        try:
            for start in range(0, len(self.batches), n):
                worker.dense_grads = None
                if start + k < len(self.batches):
                    self._step(worker, self.batches[start + k])
                self.barrier.wait()
        except threading.BrokenBarrierError:
            pass  # another worker failed and broke the barrier: its error is the one raised
        except BaseException as error:  # noqa: BLE001 - re-raised by run_epoch in the calling thread
            self.failures.append(error)
            self.barrier.abort()

    def _step(self, worker: Worker, index: torch.Tensor) -> None:
        hogwild = self.hogwild
        parts = worker.task.losses(self.data.batch(index))
        total = sum(parts.values())
        # autograd.grad, not backward: .grad of the shared parameters would be written by several threads
        grads = torch.autograd.grad(total, hogwild.params, allow_unused=True)
        with hogwild.lock:
            for param, grad, sparse in zip(hogwild.params, grads, hogwild.is_sparse):
                if sparse:
                    param.grad = grad
            self.optim.step(self.step, part="sparse")
            self.optim.zero_grad()
            self.step += 1
            self.progress(len(index), total)
        worker.dense_grads = [g for g, sparse in zip(grads, hogwild.is_sparse) if not sparse]
        for name, value in {"total": total, **parts}.items():
            worker.sums[name] = worker.sums.get(name, 0.0) + value.detach() * len(index)

    def _dense_step(self) -> None:
        """The barrier's action, in one thread while the others wait: the mean of the round's dense gradients."""
        rounds = [w.dense_grads for w in self.hogwild.workers if w.dense_grads is not None]
        if not rounds:
            return
        for j, param in enumerate(self.hogwild.dense):
            given = [grads[j] for grads in rounds if grads[j] is not None]
            param.grad = None if not given else torch.stack(given).sum(0).div_(len(rounds))
        self.optim.step(self.step - 1, part="dense")
        self.optim.zero_grad()
