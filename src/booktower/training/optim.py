"""The optimiser policy, in one place: SparseAdam for sparse tables + AdamW for the rest, or one AdamW."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from booktower import native
from booktower.config.training import OptimizerConfig
from booktower.models.indexing import distinct_rows
from booktower.training.losses import CompiledOnCuda

log = logging.getLogger(__name__)


def sparse_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Weights of embedding tables that produce sparse gradients."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse]


class LazyAdam(torch.optim.Optimizer):
    """Adam for sparse-gradient tables that touches only the rows in the gradient (like SparseAdam, whose
    arithmetic it follows), with fewer passes: gather the rows' moments, update them, scatter them back."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state_of(p)
                state["step"] += 1
                self.apply(p, p.grad, group, state["step"])

    def state_of(self, p: torch.Tensor) -> dict:
        """p's moments and step count, created at the first use."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def apply(self, p: torch.Tensor, grad: torch.Tensor, group: dict, step: int, lr: float | None = None,
              part: int = 0, parts: int = 1) -> None:
        """One update of `p` by `grad` as its step number `step` (bias correction) at `lr` (default the group's),
        on the rows r with r % parts == part only: `parts` threads may apply one gradient at once, each to its
        own rows. The step count in p's state is the caller's to advance."""
        if grad.is_sparse:
            index, values = grad._indices()[0], grad._values()  # rows may repeat: merged below
        else:
            index, values = _touched_rows(grad)
        if values.numel() == 0:
            return
        state = self.state_of(p)
        beta1, beta2 = group["betas"]
        lr = group["lr"] if lr is None else lr
        step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        if native.lazy_adam_(p, state["exp_avg"], state["exp_avg_sq"], index, values, step_size, beta1, beta2,
                             group["eps"], part, parts):
            return  # one pass over the entries in C: about 4x less time than the ops below
        if parts > 1:
            mine = index.remainder(parts) == part
            index, values = index[mine], values[mine]
            grad = torch.sparse_coo_tensor(index.unsqueeze(0), values, p.shape, check_invariants=False)
        rows, values = _touched_rows(grad) if grad.is_sparse else (index, values)  # (r,), (r, d)
        m = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)  # (r, d)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        # rows are distinct, so a gather-add-scatter equals index_add_, which is ~4x slower on the CPU
        # (1.6 vs 0.4 ms for 13k rows of the amazon item table, 2 threads)
        update = m.div_(v.sqrt_().add_(group["eps"]))
        p.index_copy_(0, rows, p.index_select(0, rows).add_(update, alpha=-step_size))


def _masked_adam(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, grad: torch.Tensor,
                 step_size: torch.Tensor, beta1: float, beta2: float, eps: float) -> None:
    touched = grad.ne(0).any(dim=1, keepdim=True)  # (n, 1)
    exp_avg.copy_(torch.where(touched, exp_avg.lerp(grad, 1 - beta1), exp_avg))
    exp_avg_sq.copy_(torch.where(touched, exp_avg_sq * beta2 + (1 - beta2) * grad * grad, exp_avg_sq))
    update = exp_avg / (exp_avg_sq.sqrt() + eps)
    param.sub_(torch.where(touched, update, torch.zeros_like(update)) * step_size)


_compiled_masked_adam = CompiledOnCuda(_masked_adam)


@torch.no_grad()
def masked_adam_(optimizer: LazyAdam, param: torch.Tensor, step_size: torch.Tensor, compiled: bool = True) -> None:
    """LazyAdam's update of `param` by its dense gradient at `step_size` (a 0-d tensor: lr times the bias
    correction, set by the caller), as passes over the whole table with the rows whose gradient is all zero left
    as they are: the same rows and arithmetic as `LazyAdam.apply` on a dense gradient, with fixed shapes and no
    host sync, so a CUDA graph can replay it (training/graphed.py). Compiled on CUDA unless `compiled` is False.
    Costs O(table) per step where `apply` costs O(touched rows): for GPU tables, not for a CPU step."""
    state = optimizer.state_of(param)
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    _compiled_masked_adam(param, state["exp_avg"], state["exp_avg_sq"], param.grad, step_size, beta1, beta2,
                          optimizer.param_groups[0]["eps"], compiled=compiled)


def _touched_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a gradient updates (ascending) and their summed values. The update is non-linear, so each row
    must appear once; a dense gradient gives its non-zero rows, so the update stays lazy."""
    if not grad.is_sparse:
        rows = grad.ne(0).any(dim=1).nonzero().squeeze(1)  # (r,)
        return rows, grad.index_select(0, rows)
    if grad.is_coalesced():
        return grad._indices()[0], grad._values()
    index, values = grad._indices()[0], grad._values()  # (nnz,), (nnz, d), rows maybe repeated
    if bool((index[1:] > index[:-1]).all()):
        # Already one entry per row, only not flagged so: the item tables' gradients arrive like this (lookups of
        # distinct ids), and one comparison pass saves the merge (0.6 ms per step on the amazon item table).
        return index, values
    # Merged without coalesce()'s sort where the table is small enough: on the 38k-row amazon item table with
    # ~17k entries per step, 1.4 ms instead of 1.7 ms (one thread).
    rows, slot = distinct_rows(index, grad.shape[0])
    merged = torch.zeros(len(rows), values.shape[1], dtype=values.dtype, device=values.device)
    return rows, merged.index_add_(0, slot, values)


def lr_factor(schedule: str, step: int, total_steps: int, warmup_fraction: float) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total_steps`."""
    if schedule == "none" or total_steps <= 1:
        return 1.0
    progress = min(step / total_steps, 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear_warmup":
        warmup = max(int(warmup_fraction * total_steps), 1)
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(total_steps - warmup, 1))
    raise ValueError(f"unknown schedule {schedule!r}; choose none, cosine or linear_warmup")


@dataclass
class Optimizers:
    """The optimisers of a run, stepped together, with the schedule applied to every group."""

    optimizers: list[torch.optim.Optimizer]
    dense: list[nn.Parameter]
    config: OptimizerConfig
    total_steps: int
    grad_clip: float | None = None  # global norm of the dense gradients

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def sparse_optimizer(self) -> LazyAdam | None:
        """The tables' row-wise optimiser (None: no sparse tables)."""
        return next((opt for opt in self.optimizers if isinstance(opt, LazyAdam)), None)

    def lr_factor(self, step: int) -> float:
        """The schedule's multiplier of the base learning rates at `step`."""
        return lr_factor(self.config.schedule, step, self.total_steps, self.config.warmup_fraction)

    def step(self, step: int, part: str = "all") -> None:
        """Update with the current gradients at schedule position `step`. `part`: "all", or "dense" (the dense
        optimiser only, with the gradient clip): worker threads update the tables themselves (workers.py)."""
        if part not in ("all", "dense"):
            raise ValueError(f"unknown optimiser part {part!r}; choose all or dense")
        chosen = [opt for opt in self.optimizers if part == "all" or not isinstance(opt, LazyAdam)]
        factor = self.lr_factor(step)
        for opt in chosen:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
        if self.grad_clip is not None and self.dense:
            torch.nn.utils.clip_grad_norm_(self.dense, self.grad_clip)
        for opt in chosen:
            opt.step()


def build_optimizers(model: nn.Module, config: OptimizerConfig, total_steps: int,
                     grad_clip: float | None = None) -> Optimizers:
    sparse = sparse_parameters(model)
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids and p.requires_grad]
    optimizers: list[torch.optim.Optimizer] = []
    if config.kind == "adamw" and sparse:
        raise ValueError("optimizer.kind=adamw cannot update sparse embedding tables: set model.sparse_ids=false "
                         "or optimizer.kind=hybrid")
    if sparse:
        optimizers.append(LazyAdam(sparse, lr=config.sparse_lr))
    if dense:
        # fused: one kernel over every tensor; the default per-tensor loop on CPU took ~5x longer for these
        # small MLPs (benchmarks/train_throughput.py).
        optimizers.append(torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay, fused=True))
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    built = []
    if sparse:
        built.append(f"LazyAdam (row-wise SparseAdam, lr={config.sparse_lr}) on {len(sparse)} sparse tables "
                     f"({sum(p.numel() for p in sparse):,} weights)")
    if dense:
        built.append(f"AdamW(lr={config.lr}, weight_decay={config.weight_decay}) on {len(dense)} dense tensors "
                     f"({sum(p.numel() for p in dense):,} weights)")
    log.info("optimisers: %s; schedule %s over %d steps", ", ".join(built), config.schedule, total_steps)
    return Optimizers(optimizers, dense, config, total_steps, grad_clip)
