"""Stopping a training run that diverged: an epoch whose loss or weights are not finite."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from booktower.config import ConfigError
from booktower.config.training import OptimizerConfig


class TrainingDivergedError(ConfigError):
    """An epoch ended with a loss or weights that are not finite. A ConfigError: the usual fix is a lower
    learning rate, so the CLI prints it as one line naming the fix, and a sweep records the trial as failed."""


def check_finite(model: torch.nn.Module, loss: float, epochs_done: int, checkpoints: Path,
                 optimizer: OptimizerConfig) -> None:
    """Raise at the first epoch whose loss or weights are not finite, before its checkpoint replaces the last
    good one. Once per epoch: the loss is on the host already, the weights cost one sync. The last step of an
    epoch can leave non-finite weights behind a finite loss, hence both."""
    weights_finite = bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())
    if math.isfinite(loss) and weights_finite:
        return
    what = f"loss {loss}" if not math.isfinite(loss) else "weights not finite"
    kept = (f"{checkpoints} keeps epoch {epochs_done}, the last finite one" if epochs_done
            else "no epoch finished with a finite loss, so no checkpoint was written")
    raise TrainingDivergedError(
        f"training diverged in epoch {epochs_done + 1} ({what}); {kept}. Fix: lower training.optimizer.lr "
        f"(now {optimizer.lr:g}) and training.optimizer.sparse_lr (now {optimizer.sparse_lr:g}), e.g. by 10x, or "
        "check the data for extreme numeric features; then train again without --resume (the rates are part of "
        "the run's config)")
