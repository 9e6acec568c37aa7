"""The optimiser policy, in one place: SparseAdam for sparse tables + AdamW for the rest, or one AdamW."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from booktower.config.training import OptimizerConfig

log = logging.getLogger(__name__)


def sparse_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Weights of embedding tables that produce sparse gradients."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse]


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

    def step(self, step: int) -> None:
        factor = lr_factor(self.config.schedule, step, self.total_steps, self.config.warmup_fraction)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
        if self.grad_clip is not None and self.dense:
            torch.nn.utils.clip_grad_norm_(self.dense, self.grad_clip)
        for opt in self.optimizers:
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
        optimizers.append(torch.optim.SparseAdam(sparse, lr=config.sparse_lr))
    if dense:
        optimizers.append(torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay))
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    n_sparse = sum(p.numel() for p in sparse)
    n_dense = sum(p.numel() for p in dense)
    log.info("optimisers: %s", ", ".join(
        ([f"SparseAdam(lr={config.sparse_lr}) on {len(sparse)} sparse tables ({n_sparse:,} weights)"] if sparse else [])
        + ([f"AdamW(lr={config.lr}, weight_decay={config.weight_decay}) on {len(dense)} dense tensors "
            f"({n_dense:,} weights)"] if dense else [])) + f"; schedule {config.schedule} over {total_steps} steps")
    return Optimizers(optimizers, dense, config, total_steps, grad_clip)
