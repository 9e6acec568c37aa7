"""Worker threads (`training.workers`): W Python threads on one shared model, each computing one batch of a
round on one core; synchronous data parallelism inside one process.

Why: the amazon-books-2014 step is ~150 small operations and a few small matrix products, most of them too small
to split over two cores, so two threads inside each operation gain little over one (docs/benchmarks.md). Two
whole batches at once keep both cores busy.

A round takes batches r * W .. r * W + W - 1, worker k the k-th, in two phases:
- A: every worker computes its batch's gradients, all at the weights the round began with.
- B: the dense weights (the MLPs) take the mean of the round's gradients, as one step on the round's batches
  together (the first barrier's action, in one thread). The sparse tables take each batch's gradient in worker
  order, as consecutive LazyAdam steps, every worker updating its own rows (r % W == k) of every table.
Nothing is read while it is written and every sum runs in a fixed order, so a run is reproducible bit for bit;
each kernel runs on one thread, so the result does not depend on the machine's core count either.

Session 8 shipped Hogwild-style table updates instead (each step's as soon as it ended, under a lock, while the
other worker read the tables): no faster than these rounds (61,213 against 59,112/s, one process taking turns)
and not reproducible. Updating the dense weights that way too was 1.46x faster but learned much more slowly
(test NDCG@20 0.0373 against 0.0391): gradients of dense weights one update old hurt, of tables did not
(docs/log.md, session 8).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from booktower.data.samplers import NegativeSampler
from booktower.models.two_tower import TwoTower
from booktower.training.batching import TrainingData
from booktower.training.optim import Optimizers, sparse_parameters
from booktower.training.task import TrainTask
from booktower.utils.threads import one_thread_per_kernel

# progress(rows of a finished step, its loss), called once per step, in step order
Progress = Callable[[int, torch.Tensor], None]


@dataclass
class Gradients:
    """One worker's batch in a round: its step number, loss, rows and gradients (None: a parameter it did not
    reach), split into the sparse tables' and the dense weights'."""

    step: int
    loss: torch.Tensor
    rows: int
    sparse: list[torch.Tensor | None]
    dense: list[torch.Tensor | None]


@dataclass(frozen=True)
class RoundTimes:
    """Where one round's time went, in seconds (recorded where `Workers.timings` is a list; benchmarks/ reads it):
    the part of `total` beyond the slowest worker's gradients is what the round's synchronisation costs."""

    gradients: list[float]  # each worker's phase A (batch, forward, backward)
    spread: float  # from the first worker's end of phase A to the last's: the faster ones wait this long
    dense: float  # the dense step, in one thread while the others wait (the first barrier's action)
    tables: list[float]  # each worker's phase B (its rows of every table)
    total: float  # from the first start of phase A to the second barrier


@dataclass
class Worker:
    """One thread's task (its own negative sampler and dropout generator) and its batch of the current round."""

    task: TrainTask
    gradients: Gradients | None = None  # this round's; None: no batch (the epoch's last round may be short)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # loss parts x rows over the epoch


class Workers:
    """Runs an epoch's batches on `len(samplers)` worker threads; in round r worker k takes batch r * W + k."""

    def __init__(self, model: TwoTower, task: TrainTask, samplers: list[NegativeSampler]) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        sparse_ids = {id(p) for p in sparse_parameters(model)}
        self.params = [p for p in params if id(p) in sparse_ids] + [p for p in params if id(p) not in sparse_ids]
        self.n_sparse = len(sparse_ids & {id(p) for p in params})
        self.sparse, self.dense = self.params[: self.n_sparse], self.params[self.n_sparse :]
        self.workers = [Worker(task.replica(model, sampler, None)) for sampler in samplers]
        self.timings: list[RoundTimes] | None = None  # a list: every round's RoundTimes is appended to it

    def set_generators(self, generators: list[tuple[torch.Generator, torch.Generator]]) -> None:
        """Each worker's (negative sampler, dropout) generators for the coming epoch."""
        for worker, (negatives, dropout) in zip(self.workers, generators):
            worker.task.sampler.generator = negatives
            worker.task.generator = dropout

    def run_epoch(self, batches: list[torch.Tensor], data: TrainingData, optim: Optimizers, first_step: int,
                  progress: Progress) -> dict[str, torch.Tensor]:
        """Train on `batches` (index tensors into `data`), steps numbered from `first_step` for the learning-rate
        schedule; return the loss parts summed over rows."""
        run = _Epoch(self, batches, data, optim, first_step, progress)
        with one_thread_per_kernel():  # threads started here run their kernels on one thread each
            threads = [threading.Thread(target=run.work, args=(k,), name=f"worker-{k}", daemon=True)
                       for k in range(len(self.workers))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if run.failures:
            raise run.failures[0]
        sums: dict[str, torch.Tensor] = {}
        for worker in self.workers:  # in worker order: the same float sums every run
            for name, value in worker.sums.items():
                sums[name] = sums.get(name, 0.0) + value
            worker.sums = {}
        return sums


class _Epoch:
    """One epoch's shared state: the step counter, the two barriers of a round and the first failure."""

    def __init__(self, workers: Workers, batches: list[torch.Tensor], data: TrainingData, optim: Optimizers,
                 first_step: int, progress: Progress) -> None:
        self.workers, self.batches, self.data, self.optim = workers, batches, data, optim
        self.step, self.progress = first_step, progress
        self.tables = optim.sparse_optimizer()
        self.failures: list[BaseException] = []
        n = len(workers.workers)
        self.gradients_done = threading.Barrier(n, action=self._round_begin)
        self.tables_done = threading.Barrier(n, action=self._round_end)
        self.round: list[Gradients] = []  # this round's batches, in worker order
        # each worker's (start, end) of phase A and of phase B in this round, and the dense step's duration
        self.stamps: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)] * n
        self.dense_seconds = 0.0

    def work(self, k: int) -> None:
        worker, n = self.workers.workers[k], len(self.workers.workers)
        try:
            for start in range(0, len(self.batches), n):
                began = time.perf_counter()
                worker.gradients = None
                if start + k < len(self.batches):
                    worker.gradients = self._gradients(worker, self.batches[start + k])
                computed = time.perf_counter()
                self.gradients_done.wait()
                released = time.perf_counter()
                self._table_rows(k, n)
                self.stamps[k] = (began, computed, released, time.perf_counter())
                self.tables_done.wait()
        except threading.BrokenBarrierError:
            pass  # another worker failed and broke the barrier: its error is the one raised
        except BaseException as error:  # noqa: BLE001 - re-raised by run_epoch in the calling thread
            self.failures.append(error)
            self.gradients_done.abort()
            self.tables_done.abort()

    def _gradients(self, worker: Worker, index: torch.Tensor) -> Gradients:
        """Phase A: the batch's loss parts and gradients at the round's weights; nothing is written."""
        parts = worker.task.losses(self.data.batch(index))
        total = sum(parts.values())
        # autograd.grad, not backward: .grad of the shared parameters would be written by several threads
        grads = torch.autograd.grad(total, self.workers.params, allow_unused=True)
        for name, value in {"total": total, **parts}.items():
            worker.sums[name] = worker.sums.get(name, 0.0) + value.detach() * len(index)
        n = self.workers.n_sparse
        return Gradients(-1, total.detach(), len(index), list(grads[:n]), list(grads[n:]))

    def _round_begin(self) -> None:
        """The first barrier's action, in one thread while the others wait: the dense step, timed."""
        began = time.perf_counter()
        self._dense_step()
        self.dense_seconds = time.perf_counter() - began

    def _dense_step(self) -> None:
        """Number the round's steps, create missing table state (so that phase B never writes the optimiser's
        dicts), step the dense weights with the mean of the round's gradients."""
        self.round = [w.gradients for w in self.workers.workers if w.gradients is not None]
        for gradients in self.round:
            gradients.step, self.step = self.step, self.step + 1
        if self.tables is not None:
            for param in self.workers.sparse:
                self.tables.state_of(param)
        if not self.round:
            return
        for param, mean in zip(self.workers.dense, _mean_gradients([g.dense for g in self.round])):
            param.grad = mean
        self.optim.step(self.round[-1].step, part="dense")
        self.optim.zero_grad()

    def _table_rows(self, part: int, parts: int) -> None:
        """Phase B: this worker's rows of every table take the round's gradients in worker order."""
        if self.tables is None:
            return
        group = self.tables.param_groups[0]
        for i, param in enumerate(self.workers.sparse):
            count = self.tables.state[param]["step"]
            for gradients in self.round:
                if gradients.sparse[i] is None:
                    continue
                count += 1
                lr = group["base_lr"] * self.optim.lr_factor(gradients.step)
                self.tables.apply(param, gradients.sparse[i], group, count, lr, part, parts)

    def _round_end(self) -> None:
        """The second barrier's action: advance the tables' step counts, report the round's steps (and, where
        asked, its times)."""
        if self.workers.timings is not None:
            ends = [s[1] for s in self.stamps]
            self.workers.timings.append(RoundTimes(
                [s[1] - s[0] for s in self.stamps], max(ends) - min(ends), self.dense_seconds,
                [s[3] - s[2] for s in self.stamps], time.perf_counter() - min(s[0] for s in self.stamps)))
        for gradients in self.round:
            if self.tables is not None:
                for i, param in enumerate(self.workers.sparse):
                    if gradients.sparse[i] is not None:
                        self.tables.state[param]["step"] += 1
            self.progress(gradients.rows, gradients.loss)


def _mean_gradients(rounds: list[list[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Per parameter, the mean of the batches' gradients (None counts as zeros; None where all are None), summed
    in batch order. Written into the first batch's tensors, which are not used again: where every batch has
    every gradient (the usual case), one fused add per further batch and one division instead of three ops per
    parameter: 0.09 against 0.27 ms for the 16 dense tensors of the amazon default, inside the round's serial
    section."""
    n = len(rounds)
    if all(g is not None for grads in rounds for g in grads):
        total = list(rounds[0])
        for grads in rounds[1:]:
            torch._foreach_add_(total, grads)
        torch._foreach_div_(total, n)
        return total
    means: list[torch.Tensor | None] = []
    for j in range(len(rounds[0])):
        given = [grads[j] for grads in rounds if grads[j] is not None]
        means.append(None if not given else torch.stack(given).sum(0).div_(n))
    return means
