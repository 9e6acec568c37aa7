"""The training step on fixed shapes, captured once as a CUDA graph and replayed for every full batch.

At the default batch of 1,024 an H200 computes a step in about 1.1 ms but the eager step takes about 12.5 ms:
the host launches ~440 small kernels and waits in 17 syncs for data-dependent shapes (docs/benchmarks.md,
"GPU"). Here the task runs with static shapes (`TrainTask.static_shapes`) and the tables with dense gradients
updated by the masked LazyAdam (`optim.masked_adam_`), so building the batch, both towers, the loss, the
backward, the gradient clip and both optimisers' updates form one graph. Per step the host draws the negatives,
copies them and the batch's indices into the graph's inputs, sets the learning rates and replays it.

With `training.compile` the batch and its losses go through torch.compile as a whole (forward and backward,
fused by Inductor), so the graph holds fewer, larger kernels. A graph alone only removes the launch gaps between
the eager step's ~434 kernels, whose ~1.1 ms of GPU time at batch 1,024 on an H200 would still cap it near 930k
interactions/s, short of 1M/s; fusion removes kernels. Dynamo traces the static losses as one graph with no
break (tests/training/test_graphed.py)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable

import torch

from booktower.config.training import TrainingConfig
from booktower.training.losses import CompiledOnCuda
from booktower.training.optim import LazyAdam, Optimizers, masked_adam_, sparse_parameters
from booktower.training.task import TrainTask

log = logging.getLogger(__name__)

Parts = dict[str, torch.Tensor]

LARGE_TABLES = 64_000_000
"""Table weights past which `auto` keeps the eager step (and `true` warns): the dense gradients and the masked
update read and write about seven copies of every table per step, ~1.8 GB at this size (~0.4 ms at an H200's
~4.8 TB/s; an estimate from bandwidth, not a measurement), against ~1 ms for a whole step of the default config
to reach 1M/s."""


def graph_blockers(task: TrainTask, distributed: bool) -> list[str]:
    """Why this run's step cannot be captured (empty: it can)."""
    reasons = []
    if distributed:
        reasons.append("torchrun (DistributedDataParallel's gradient hooks are not captured here)")
    if not task.fuses_in_batch_softmax():
        reasons.append("a main loss other than the in-batch sampled softmax (training.loss.main=sampled_softmax "
                       "with training.negatives.sampler in_batch or mixed)")
    if task.use_cal:
        reasons.append("the category alignment loss (it groups rows by category: data-dependent shapes)")
    spec = task.model.spec
    if spec.user.id_dropout > 0 or spec.item.id_dropout > 0:
        reasons.append("ID dropout (it draws from its own generator)")
    if task.model.history is not None and task.model.history.kind == "attention":
        reasons.append("attention pooling of the history")
    return reasons


AUTO_MAX_BATCH = 8192
"""The largest batch that `training.cuda_graph: auto` captures. Up to here the eager step waits on the host's
kernel launches (an H200 took 12.5 ms per eager step at 1,024 rows and 14.0 at 8,192; the captured, compiled step
0.5 ms at 1,024); past it the eager step is bound by the GPU's arithmetic (1.9M training interactions/s at 32,768),
and the graph's dense table gradients would only add work (docs/benchmarks.md, "GPU")."""


def small_gpu_batch_note(device_type: str, batch_size: int) -> str | None:
    """A hint for a GPU run whose batch leaves the GPU waiting on the host, or None. At 1,024 rows an H200 spent
    1.1 ms of a 12.5 ms step computing, and steps of 8,192 and 32,768 rows took 14.0 and 14.8 ms
    (docs/benchmarks.md, "GPU"): up to there a larger batch is nearly free throughput."""
    if device_type != "cuda" or batch_size >= 8192:
        return None
    return (f"batch {batch_size:,} on a GPU without a CUDA graph: eager steps this small are bound by kernel "
            "launches (about 80k training interactions/s on an H200 at 1,024; 1.9M/s there with the step captured, "
            "training.cuda_graph, and 1.9-2.2M/s eager at 32,768); configs/amazon-books-2014-gpu.yaml shows a "
            "GPU-sized batch and settings that train well at it")


def graph_choice(wanted: bool | str, device_type: str, batch_size: int, blockers: list[str],
                 table_weights: int) -> tuple[bool, str | None]:
    """Whether to capture the step, and a line for the log: a warning where `training.cuda_graph: true` asked
    for what cannot be (or should not be) done, an info line where `auto` chose the eager step for a reason the
    user may want to know."""
    if wanted is False:
        return False, None
    asked = wanted is True
    if device_type != "cuda":
        return False, f"training.cuda_graph is for CUDA and is ignored on {device_type}" if asked else None
    if not asked and batch_size > AUTO_MAX_BATCH:
        return False, None  # a GPU-sized batch: the eager step is already bound by the GPU
    eager = ("training.cuda_graph is ignored" if asked
             else "the training step runs eagerly (training.cuda_graph: auto)")
    if blockers:
        return False, f"{eager}: this run's step cannot be captured with {'; '.join(blockers)}"
    if table_weights > LARGE_TABLES:
        passes = (f"the graphed step passes over every row of the tables each step ({table_weights:,} weights "
                  "here, with their Adam moments)")
        if not asked:
            return False, f"{eager}: {passes}; training.cuda_graph=true asks for it anyway"
        return True, (f"training.cuda_graph: {passes}: for a catalogue this size a large training.batch_size "
                      "without the graph may well be faster; compare both with benchmarks/train_throughput.py")
    return True, None


def graphed_step(task: TrainTask, optim: Optimizers, config: TrainingConfig, device: torch.device,
                 distributed: bool, announce: bool = True) -> "GraphedStep | None":
    """The step of `training.cuda_graph`, or None: eager steps (see `graph_choice`). `announce=False` (other
    ranks; a refit's second trainer) keeps `auto`'s info line out of the log; `true`'s warnings stay."""
    blockers = graph_blockers(task, distributed) if device.type == "cuda" else []
    table_weights = sum(p.numel() for p in sparse_parameters(task.model))
    use, line = graph_choice(config.cuda_graph, device.type, config.batch_size, blockers, table_weights)
    asked = config.cuda_graph is True
    if line and (asked or announce):
        log.log(logging.WARNING if asked else logging.INFO, "%s", line)
    return GraphedStep(task, optim, config.batch_size, config.bf16) if use else None


class GraphedStep:
    """One optimiser step per call, on `batch_size` rows: eager for the first `warmup` calls (lazy state, the
    compiled kernels), then captured and replayed. An epoch's shorter last batch runs the same ops eagerly. A
    capture that fails costs one warning; the step then stays eager, still without host syncs.

    `device_graph=False` (the CPU tests): "replay" reruns the same body on the graph's input buffers, so the
    copies into them, the learning rates and the step sizes are checked where no CUDA graph can be made."""

    def __init__(self, task: TrainTask, optim: Optimizers, batch_size: int, bf16: bool, warmup: int = 3,
                 device_graph: bool = True) -> None:
        device = task.data.device
        task.model.use_dense_gradients()
        task.static_shapes()
        self.task, self.optim, self.batch_size, self.warmup = task, optim, batch_size, warmup
        self.bf16 = bf16 and device.type == "cuda"
        self.device_graph = device_graph and device.type == "cuda"
        self.lazy = optim.sparse_optimizer()
        self.tables = [p for group in self.lazy.param_groups for p in group["params"]] if self.lazy else []
        self.dense = [opt for opt in optim.optimizers if not isinstance(opt, LazyAdam)]
        for opt in self.dense:
            # its warm-up steps run capturable outside a capture on purpose: PyTorch's one-off warning says not to
            opt._warned_capturable_if_run_uncaptured = True
        # The graph's inputs and the rates it reads: filled before each replay, never reallocated.
        self.index = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.negatives = torch.zeros(task.n_negatives, dtype=torch.int64, device=device)
        self.step_sizes = [torch.zeros((), device=device) for _ in self.tables]
        self.dense_lrs = [[torch.tensor(group["lr"], device=device) for group in opt.param_groups]
                          for opt in self.dense]
        self.replay: Callable[[], Parts] | None = None
        self.calls = 0
        self.losses: Callable[[torch.Tensor, torch.Tensor], Parts] = self.batch_losses
        self.compile = device.type == "cuda" and task.compile  # training.compile: the losses and table updates
        if self.compile:
            task.compile = False  # its own compiled loss passes would nest in the compiled whole
            self.losses = CompiledOnCuda(self.batch_losses)

    def batch_losses(self, index: torch.Tensor, negatives: torch.Tensor) -> Parts:
        """The loss parts of the interactions `index` with these sampled negatives."""
        return self.task.losses(self.task.data.batch(index), negatives)

    @property
    def captured(self) -> bool:
        return self.replay is not None

    @property
    def compiled(self) -> bool:
        """Whether the losses run compiled (False: never asked for, or the compiler failed and eager took over)."""
        return isinstance(self.losses, CompiledOnCuda) and self.losses.enabled

    def run(self, index: torch.Tensor, step: int) -> Parts:
        """Train on the interactions `index` as optimiser step `step` (the schedule's position). Returns the
        loss parts, "total" first: on a replay the graph's own outputs, overwritten by the next replay."""
        negatives = self.task.draw_negatives(len(index))
        self._set_rates(step)
        if len(index) != self.batch_size:
            # not compiled: a second shape would cost a second compile of the forward and backward
            return self._body(index, negatives, self.batch_losses)
        self.index.copy_(index)
        self.negatives.copy_(negatives)
        if self.replay is not None:
            return self.replay()
        self.calls += 1
        if self.calls <= self.warmup:
            return self._warm()
        return self._capture()

    def _set_rates(self, step: int) -> None:
        """The schedule's learning rates at `step` into the optimisers (and the graph's copies of them), and the
        tables' step counts and Adam step sizes (`LazyAdam.apply`'s arithmetic)."""
        factor = self.optim.lr_factor(step)
        for opt, lrs in zip(self.dense, self.dense_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = group["base_lr"] * factor
                lr.fill_(group["lr"])
        if self.lazy is None:
            return
        group = self.lazy.param_groups[0]
        group["lr"] = group["base_lr"] * factor
        beta1, beta2 = group["betas"]
        for table, size in zip(self.tables, self.step_sizes):
            state = self.lazy.state_of(table)
            state["step"] += 1
            t = state["step"]
            size.fill_(group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t))

    def _body(self, index: torch.Tensor, negatives: torch.Tensor, losses: Callable | None = None) -> Parts:
        """What the graph holds: the batch, its losses, backward, the clip and both optimisers' updates."""
        parts = self._gradients(index, negatives, losses)
        self._update()
        return parts

    def _gradients(self, index: torch.Tensor, negatives: torch.Tensor, losses: Callable | None = None) -> Parts:
        for opt in self.optim.optimizers:
            opt.zero_grad(set_to_none=True)
        # cache_enabled=False: autocast's cache of casted weights would be freed outside the graph's pool
        with torch.autocast(index.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            parts = (losses or self.losses)(index, negatives)
        total = sum(parts.values())
        total.backward()
        return {"total": total.detach(), **{name: value.detach() for name, value in parts.items()}}

    def _update(self) -> None:
        if self.optim.grad_clip is not None and self.optim.dense:
            torch.nn.utils.clip_grad_norm_(self.optim.dense, self.optim.grad_clip, foreach=True)
        for opt in self.dense:
            opt.step()
        for table, size in zip(self.tables, self.step_sizes):
            if table.grad is not None:
                masked_adam_(self.lazy, table, size, self.compile)

    @contextlib.contextmanager
    def _tensor_rates(self):
        """The dense optimisers read their learning rates from the graph's tensors inside the block: a float
        would be frozen into the captured kernels. `capturable` lets a fused AdamW be captured. (The CPU's fused
        AdamW reads a tensor rate too, so the emulated replay takes the same path.)"""
        saved = [[(group["lr"], group["capturable"]) for group in opt.param_groups] for opt in self.dense]
        for opt, lrs in zip(self.dense, self.dense_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"], group["capturable"] = lr, True
        try:
            yield
        finally:
            for opt, groups in zip(self.dense, saved):
                for group, (lr, capturable) in zip(opt.param_groups, groups):
                    group["lr"], group["capturable"] = lr, capturable

    def _warm(self) -> Parts:
        if not self.device_graph:
            with self._tensor_rates():
                return self._body(self.index, self.negatives)
        # on a side stream, as torch.cuda.graph's recipe asks: lazy state and kernels made outside the capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self._tensor_rates():
            try:
                parts = self._gradients(self.index, self.negatives)
            except Exception as error:  # noqa: BLE001 - the compiled backward is built at its first call
                if self.losses == self.batch_losses:
                    raise
                log.warning("the compiled training step failed (%s: %s); using eager PyTorch inside the graph",
                            type(error).__name__, error)
                self.losses = self.batch_losses
                parts = self._gradients(self.index, self.negatives)
            self._update()
        torch.cuda.current_stream().wait_stream(side)
        return parts

    def _capture(self) -> Parts:
        if not self.device_graph:
            def rerun() -> Parts:
                with self._tensor_rates():
                    return self._body(self.index, self.negatives)

            self.replay = rerun
            return rerun()
        graph = torch.cuda.CUDAGraph()
        try:
            for opt in self.optim.optimizers:
                opt.zero_grad(set_to_none=True)  # the backward's gradients are then allocated in the graph
            torch.cuda.synchronize()
            with self._tensor_rates(), torch.cuda.graph(graph):
                outputs = self._body(self.index, self.negatives)
        except Exception as error:  # noqa: BLE001 - an op that cannot be captured leaves the eager static step
            log.warning("CUDA graph capture of the training step failed (%s: %s); training on without it",
                        type(error).__name__, error)
            self.device_graph = False
            self.warmup = math.inf  # every later full batch runs the body eagerly
            return self._body(self.index, self.negatives)

        def replay() -> Parts:
            graph.replay()
            return outputs

        self.replay = replay
        log.info("training step captured in a CUDA graph (batch %d)", self.batch_size)
        return replay()
