"""Early stopping on the validation metric, and the line that says why a run ended before its planned epochs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from booktower.config.training import TrainingConfig


@dataclass
class EarlyStopping:
    """Higher is better. `patience` epochs without an improvement of more than `min_delta` stop the run."""

    patience: int
    min_delta: float
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is the new best."""
        if value > self.best + self.min_delta or self.best_epoch == 0:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def early_stop_note(stopper: EarlyStopping, epoch: int, config: TrainingConfig) -> str:
    """The line that says training stopped early after `epoch`, and which weights the test scores."""
    metric = config.early_stopping.metric
    tested = (f"a model refit on train + validation for {_counted(stopper.best_epoch, 'epoch')}"
              if config.refit_on_validation else f"epoch {stopper.best_epoch}'s weights")
    return (f"stopped early after epoch {epoch} of {config.epochs}: val {metric} has not improved on epoch "
            f"{stopper.best_epoch}'s {stopper.best:.4f} for {_counted(stopper.bad_epochs, 'validation')} "
            f"(training.early_stopping.patience={stopper.patience}); the test uses {tested}")
