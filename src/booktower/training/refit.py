"""Refit on train + validation before the test: the last step of the evaluation protocol.

The baselines are fitted on train + validation before they score the test split, and in a temporal split the
validation interaction is each reader's newest one, so a model trained on train alone never learns from the
most recent period. Model selection (the epoch count) is done first on validation only; the refit then trains
a fresh model with the same seed for exactly that many epochs, without looking at validation again. A
learning-rate schedule keeps the selection run's length (its planned epochs), so the refit's rate at each epoch
is the selected model's: a cosine over the planned 30 epochs stopped at 17 is not a cosine over 17.

The refit checkpoints every epoch into RUN/refit/checkpoints, as the selection does into RUN/checkpoints, so
an interrupted refit resumes from its last finished epoch and ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from booktower.config import BooktowerConfig
from booktower.data.types import PreparedData
from booktower.models.two_tower import TwoTower
from booktower.training.batching import merge_in_time_order
from booktower.training.checkpoint import find_resume_checkpoint
from booktower.training.distributed import DistContext

log = logging.getLogger(__name__)


def with_validation_in_train(data: PreparedData) -> PreparedData:
    """The same data with the validation interactions added to train (features stay fitted on train)."""
    split = data.split
    merged = merge_in_time_order(split.train, split.valid)
    return dataclasses.replace(data, split=dataclasses.replace(split, train=merged))


def refit(config: BooktowerConfig, data: PreparedData, epochs: int, run_dir: Path,
          dist: DistContext | None = None, resume: bool = False,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TwoTower:
    """A fresh model trained on train + validation for `epochs` epochs (no validation, no early stopping);
    `resume` continues an interrupted refit from RUN/refit/checkpoints/last. Under torchrun every rank calls
    it, as for the selection run. `on_epoch(row)` sees each refit epoch's row once it is checkpointed (rank 0
    records it in run.json and MLflow)."""
    from booktower.training.pipeline import build_model
    from booktower.training.trainer import Trainer, resolve_device

    dist = dist or DistContext()
    merged = with_validation_in_train(data)
    model = build_model(config, merged, dist.device(resolve_device(config.training.device).type))
    training = config.training.model_copy(update={"epochs": epochs})
    log.info("refit: %d epochs on train + validation (%d interactions)", epochs, len(merged.split.train))
    trainer = Trainer(model, merged, training, config.seed, config.evaluation.ks, run_dir / "refit",
                      config.evaluation.user_chunk, dist, validate=False, schedule_epochs=config.training.epochs)
    # A refit that never started (the selection was interrupted) has no checkpoint: no cause to warn. Rank 0
    # decides for all: a rank that restarted while the others continued would train other epochs than they do.
    if resume:
        found = find_resume_checkpoint(trainer.checkpoints) if dist.is_main else None
        resume = dist.broadcast(found is not None)  # the other ranks' value is replaced by rank 0's
    trainer.fit(resume=resume, on_epoch=on_epoch)
    return model
