"""The training loop: epochs, progress, validation, early stopping, checkpoints and exact resume."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from booktower.config.loading import ConfigError
from booktower.config.training import TrainingConfig
from booktower.data.samplers import build_sampler, generator_state, negatives_per_batch, set_generator_state
from booktower.data.types import PreparedData
from booktower.models.batches import SideTensors
from booktower.models.two_tower import TwoTower
from booktower.training.batching import TrainingData
from booktower.training.checkpoint import find_resume_checkpoint, load_checkpoint, save_checkpoint
from booktower.training.distributed import DistContext, average_sparse_gradients, names_ddp_ignores, rank_shard
from booktower.training.divergence import check_finite
from booktower.training.early_stopping import EarlyStopping, early_stop_note
from booktower.training.evaluate import evaluate_model
from booktower.training.graphed import graphed_step, small_gpu_batch_note
from booktower.training.resume_state import checked_state, restoring
from booktower.training.optim import build_optimizers, sparse_parameters
from booktower.training.task import TrainTask
from booktower.training.workers import Workers
from booktower.utils.runinfo import peak_memory_mb
from booktower.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    rows: list[dict[str, Any]]
    best_epoch: int
    best_checkpoint: Path
    stopped_early: bool
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def write_epochs_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def apply_thread_limit(config: TrainingConfig) -> None:
    """training.num_threads, when set, caps this process's torch threads (runs sharing a machine)."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)


def resolve_device(kind: str) -> torch.device:
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device=cuda but this torch sees no CUDA device; set training.device=auto or cpu "
                          "(or install a CUDA build of torch: README, GPU install)")
    return torch.device("cuda" if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()) else "cpu")


class LossModule(torch.nn.Module):
    """The model with its training task as `forward`, so DistributedDataParallel sees one forward per step."""

    def __init__(self, model: TwoTower, task: TrainTask) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.task.losses(batch)


def epoch_generator(seed: int, epoch: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that depends only on (seed, epoch, rank): what a rank draws in an epoch needs no saved state,
    so a distributed run resumes under any world size."""
    state = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)


class Trainer:
    """Owns the loop; the model and its losses are wired by `TrainTask`. Under torchrun (`dist.enabled`) each
    rank trains on its shard of every epoch through DistributedDataParallel and only rank 0 validates, logs and
    writes checkpoints."""

    def __init__(self, model: TwoTower, data: PreparedData, config: TrainingConfig, seed: int, ks: list[int],
                 run_dir: Path, eval_chunk: int = 4096, dist: DistContext | None = None,
                 validate: bool = True, schedule_epochs: int | None = None) -> None:
        """`schedule_epochs`: the learning-rate schedule's length in epochs (default `config.epochs`). The refit
        trains fewer epochs than planned but on the selection run's schedule, so it takes the same learning rates
        at each epoch as the model that was selected."""
        self.model, self.data, self.config, self.ks = model, data, config, ks
        self.validate = validate  # False: a fixed number of epochs, no validation (the refit on train + validation)
        self.dist = dist or DistContext()
        self.seed = seed
        self.run_dir, self.eval_chunk = Path(run_dir), eval_chunk
        self.device = next(model.parameters()).device
        self.shuffle_gen = torch.Generator().manual_seed(seed)
        self.dropout_gen = torch.Generator(device=self.device).manual_seed(seed + 2)
        history = model.spec.history.max_length if model.history is not None else None
        self.train = TrainingData(data.split.train, data.n_users, data.n_items, history, self.device)
        self.sampler = build_sampler(config.negatives, self.train.item_counts, torch.Generator().manual_seed(seed + 1))
        users = SideTensors(data.user_features, self.device)
        items = SideTensors(data.item_features, self.device)
        category = torch.as_tensor(data.item_category, device=self.device)
        self.task = TrainTask(model, self.train, users, items, self.sampler, negatives_per_batch(config.negatives),
                              config.loss, category, self.dropout_gen)
        self.task.compile = config.compile
        self.shard_size = math.ceil(self.train.n / self.dist.world_size)
        self.steps_per_epoch = math.ceil(self.shard_size / config.batch_size)
        schedule_steps = self.steps_per_epoch * (schedule_epochs or config.epochs)
        self.optim = build_optimizers(model, config.optimizer, schedule_steps, config.grad_clip)
        self.sparse_tables = sparse_parameters(model)
        self.workers = self._workers()
        self.forward = self.task.losses
        if self.dist.enabled:
            self.forward = self._wrap_ddp()
        announce = self.dist.rank == 0 and validate  # once per run: a refit builds a second trainer
        self.graphed = graphed_step(self.task, self.optim, config, self.device, self.dist.enabled, announce)
        note = small_gpu_batch_note(self.device.type, config.batch_size)  # per rank: each GPU runs its own batch
        if note and self.graphed is None and announce:
            log.info(note)
        self.valid_users = self._validation_users(seed)
        self.stopper = EarlyStopping(config.early_stopping.patience, config.early_stopping.min_delta)
        self.rows: list[dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        if self.workers is not None:
            self._epoch_generators()  # each epoch re-seeds them; these serve steps run before the first

    def _wrap_ddp(self):
        from torch.nn.parallel import DistributedDataParallel

        # DDP all-reduces the dense weights; the tables keep their sparse gradients and are left out of it, and
        # `backward` all-gathers their entries instead (distributed.average_sparse_gradients). A dense all-reduce
        # of whole tables made 2 CPU processes slower than one and grows with the catalogue; gloo's own sparse
        # all-reduce crashed 2-process runs intermittently (heap corruption in 4 of ~90, session 5).
        self.task.rank, self.task.world_size = self.dist.rank, self.dist.world_size
        module = LossModule(self.model, self.task)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            module, names_ddp_ignores(module, self.sparse_tables))
        ids = [self.device.index] if self.device.type == "cuda" else None
        # No search for unused weights: every weight DDP reduces is in every step's graph, whatever the config or
        # the batch (inputs are switched on by the config, never skipped per batch; a reader without history
        # still pools zeros through the same weights): tests/training/test_distributed.py checks each model path.
        # The search would cost a graph traversal per step, and PyTorch warns once per rank when it finds none.
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=False)

    def backward(self, total: torch.Tensor) -> None:
        """Gradients of one step's loss; under DDP averaged over the ranks, the tables' included."""
        total.backward()
        if self.dist.enabled:
            average_sparse_gradients(self.sparse_tables)

    def step_kind(self) -> str:
        """How the steps ran, for the run's record: "cuda_graph" (captured), "static" (training.cuda_graph asked
        for but the capture failed or never came), "workers" or "eager"."""
        if self.graphed is not None:
            return "cuda_graph" if self.graphed.captured else "static"
        return "workers" if self.workers is not None else "eager"

    def train_step(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step on the training interactions `index`: the loss parts, "total" first."""
        if self.graphed is not None:
            parts = self.graphed.run(index, self.step)
        else:
            batch = self.train.batch(index)
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.device.type == "cuda" and self.config.bf16):
                losses = self.forward(batch)
            total = sum(losses.values())
            self.optim.zero_grad()
            self.backward(total)
            self.optim.step(self.step)
            parts = {"total": total, **losses}
        self.step += 1
        return parts

    def _workers(self) -> Workers | None:
        """The worker threads of `training.workers`, or None: one step at a time. A config written for a CPU
        (the amazon-books-2014 one asks for 2 workers) still runs under torchrun or on a GPU, one step at a time,
        so the setting is ignored there with a warning rather than refused."""
        workers = self.config.workers
        if workers == 1:
            return None
        if self.dist.enabled:
            log.warning("training.workers=%d is ignored under torchrun: each rank is a process already and runs "
                        "one step at a time (give each rank its own cores instead)", workers)
            return None
        if self.device.type != "cpu":
            log.warning("training.workers=%d is for the CPU and is ignored on %s: one step at a time (a GPU "
                        "is kept busy by training.cuda_graph or a larger batch)", workers, self.device.type)
            return None
        samplers = [build_sampler(self.config.negatives, self.train.item_counts, torch.Generator())
                    for _ in range(workers)]
        log.info("%d worker threads, one core each", workers)
        return Workers(self.model, self.task, samplers)

    def _epoch_generators(self) -> None:
        """Distributed: re-seed this rank's negative sampler and dropout from (seed, epoch, rank); worker
        threads: each worker's from (seed, epoch, worker)."""
        rank, epoch = self.dist.rank, self.epoch
        if self.workers is not None:
            self.workers.set_generators([(epoch_generator(self.seed + 1, epoch, k),
                                          epoch_generator(self.seed + 2, epoch, k, self.device))
                                         for k in range(len(self.workers.workers))])
            return
        self.sampler.generator = epoch_generator(self.seed + 1, epoch, rank)
        self.task.generator = self.dropout_gen = epoch_generator(self.seed + 2, epoch, rank, self.device)

    def _validation_users(self, seed: int) -> np.ndarray | None:
        limit, users = self.config.max_valid_users, np.unique(self.data.split.valid.user)
        if limit is None or limit >= len(users):
            return None
        log.info("validating on a fixed %d of the %d validation readers (training.max_valid_users): the epochs' val "
                 "metrics and early stopping read them; metrics.json scores every reader", limit, len(users))
        return np.sort(np.random.default_rng(seed + 3).choice(users, size=limit, replace=False))

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def _state(self, stopped: bool) -> dict[str, Any]:
        state = {
            "epoch": self.epoch, "step": self.step, "stopped": stopped, "rows": self.rows,
            "early_stopping": {"best": self.stopper.best, "best_epoch": self.stopper.best_epoch,
                               "bad_epochs": self.stopper.bad_epochs},
            "sampler": self.sampler.state_dict(), "shuffle_generator": generator_state(self.shuffle_gen),
            "dropout_generator": generator_state(self.dropout_gen), "torch_rng": torch.get_rng_state().tolist(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device).tolist()
        return state

    def _restore(self) -> bool:
        """Load the last checkpoint; return whether the run had already finished."""
        found = find_resume_checkpoint(self.checkpoints)
        if found is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", self.checkpoints)
            return False
        with restoring(found):  # a damaged or edited state.json: a CheckpointError naming it, and the fix
            state = checked_state(found, load_checkpoint(found, self.model, self.optim.optimizers))
            self.epoch, self.rows = state["epoch"], state["rows"]
            self.step = self._schedule_position(state["step"])
            es = state["early_stopping"]
            self.stopper.best, self.stopper.best_epoch = es["best"], es["best_epoch"]
            self.stopper.bad_epochs = es["bad_epochs"]
            self.sampler.load_state_dict(state["sampler"])
            set_generator_state(self.shuffle_gen, state["shuffle_generator"])
            set_generator_state(self.dropout_gen, state["dropout_generator"])
            torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
            if "cuda_rng" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(torch.tensor(state["cuda_rng"], dtype=torch.uint8), self.device)
        log.info("resumed from %s after epoch %d (step %d)", found, self.epoch, self.step)
        return bool(state["stopped"])

    def _schedule_position(self, saved_step: int) -> int:
        """The schedule's step after `self.epoch` finished epochs, in this run's steps per epoch. A checkpoint
        counts steps of the world size (or batch) it was written under: reused under another, the schedule
        would jump ahead or rewind. At an epoch's end the position is epochs x steps per epoch, the same
        fraction of the planned training whatever the world size."""
        step = self.epoch * self.steps_per_epoch
        if step != saved_step:
            log.info("the checkpoint was written at step %d with another number of steps per epoch (world size "
                     "or batch): the learning-rate schedule continues at step %d of %d, the same point of the "
                     "planned training", saved_step, step, self.optim.total_steps)
        return step

    def _train_epoch(self) -> dict[str, float]:
        self.model.train()
        cfg = self.config
        perm = torch.randperm(self.train.n, generator=self.shuffle_gen)  # the same on every rank
        perm = rank_shard(perm, self.dist.rank, self.dist.world_size).to(self.device)
        if self.dist.enabled or self.workers is not None:
            self._epoch_generators()
        batches = [perm[k * cfg.batch_size : (k + 1) * cfg.batch_size] for k in range(self.steps_per_epoch)]
        start = time.perf_counter()
        bar = tqdm(total=len(perm), unit="ex", unit_scale=True, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and self.dist.is_main), leave=False, mininterval=1.0)
        sums = self.run_steps(batches, bar)
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's time includes its last queued kernels
        seconds = time.perf_counter() - start
        row = self.dist.mean({f"loss_{name}": float(value) / len(perm) for name, value in sums.items()})
        # Throughput counts the interactions of all ranks (each rank ran its shard in the same time).
        row.update(train_seconds=round(seconds, 3),
                   examples_per_s=round(len(perm) * self.dist.world_size / seconds, 1))
        return row

    def run_steps(self, batches: list[torch.Tensor], bar: tqdm) -> dict[str, torch.Tensor]:
        """Train on `batches` (index tensors into the training interactions), one step each; return the loss
        parts summed over rows. Worker threads run them a round at a time."""
        return self._worker_steps(batches, bar) if self.workers is not None else self._steps(batches, bar)

    def _steps(self, batches: list[torch.Tensor], bar: tqdm) -> dict[str, torch.Tensor]:
        """One step at a time."""
        sums: dict[str, torch.Tensor] = {}
        for k, index in enumerate(batches):
            parts = self.train_step(index)
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float() * len(index)
            bar.update(len(index))
            if k % 20 == 0:
                bar.set_postfix(loss=f"{float(parts['total'].detach()):.4f}")
        return sums

    def _worker_steps(self, batches: list[torch.Tensor], bar: tqdm) -> dict[str, torch.Tensor]:
        """The worker threads' steps (training/workers.py)."""
        assert self.workers is not None
        done = [0]

        def progress(rows: int, total: torch.Tensor) -> None:
            bar.update(rows)
            if done[0] % 20 == 0:
                bar.set_postfix(loss=f"{float(total.detach()):.4f}")
            done[0] += 1

        sums = self.workers.run_epoch(batches, self.train, self.optim, self.step, progress)
        self.step += len(batches)
        return sums

    def _validate(self) -> dict[str, float]:
        start = time.perf_counter()
        result = evaluate_model(self.model, self.data, "validation", self.ks, self.eval_chunk, self.valid_users)
        metrics = {f"val_{k}": v for k, v in result.metrics.items() if "@" in k}
        metrics["eval_seconds"] = round(time.perf_counter() - start, 3)
        return metrics

    def fit(self, resume: bool = False, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
        """Train until the planned epochs or early stopping. `on_epoch(row)` sees each epoch's row after it is
        checkpointed (sweeps use it to report and prune; it may raise to stop the run)."""
        start = time.perf_counter()
        finished = self._restore() if resume else False
        metric = self.config.early_stopping.metric
        while not finished and self.epoch < self.config.epochs:
            row: dict[str, Any] = {"epoch": self.epoch + 1, **self._train_epoch()}
            # every rank sees the same averaged loss (and the same weights), so all stop together
            check_finite(self.model, row["loss_total"], self.epoch, self.checkpoints, self.config.optimizer)
            self.epoch += 1
            improved = not self.validate  # without validation the latest epoch is the one kept
            if self.validate and (self.epoch % self.config.eval_every == 0 or self.epoch == self.config.epochs):
                # Rank 0 validates; the others wait in the broadcast and take the same early-stopping step.
                row.update(self.dist.broadcast(self._validate() if self.dist.is_main else None))
                if f"val_{metric}" not in row:
                    raise ValueError(f"training.early_stopping.metric {metric!r} is not a validation metric; "
                                     f"known: {sorted(k[4:] for k in row if k.startswith('val_'))}")
                improved = self.stopper.update(row[f"val_{metric}"], self.epoch)
            row.update(lr_factor=self.optim.optimizers[-1].param_groups[0]["lr"] /
                       self.optim.optimizers[-1].param_groups[0]["base_lr"], peak_rss_mb=round(peak_memory_mb(), 1))
            self.rows.append(row)
            finished = self.stopper.should_stop
            if self.dist.is_main:
                self._log_epoch(row, metric)
                self._checkpoint(improved, finished)
                if on_epoch is not None:
                    on_epoch(row)
        self.dist.barrier()
        if self.stopper.should_stop and self.dist.is_main:
            # the epoch logs end before the planned count: say why, and which model the test will score
            log.info(early_stop_note(self.stopper, self.epoch, self.config))
        return FitResult(self.rows, self.stopper.best_epoch, self.checkpoints / "best",
                         self.stopper.should_stop, round(time.perf_counter() - start, 3))

    def _checkpoint(self, improved: bool, stopped: bool) -> None:
        state = self._state(stopped)
        if improved or not (self.checkpoints / "best").exists():
            save_checkpoint(self.checkpoints / "best", self.model, self.optim.optimizers, state)
        save_checkpoint(self.checkpoints / "last", self.model, self.optim.optimizers, state)
        write_epochs_csv(self.run_dir / "epochs.csv", self.rows)

    def _log_epoch(self, row: dict[str, Any], metric: str) -> None:
        shown = f", val {metric} {row[f'val_{metric}']:.4f}" if f"val_{metric}" in row else ""
        log.info("epoch %d: loss %.4f, %.0f examples/s, %.1fs%s", row["epoch"], row["loss_total"],
                 row["examples_per_s"], row["train_seconds"], shown)
