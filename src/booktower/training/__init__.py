"""Training: losses, the task that wires towers and losses, optimisers, the loop, scoring and run loading."""

from booktower.training.pipeline import RunAlreadyFinished, TrainResult, train_run
from booktower.training.run import TrainedRun, load_run
from booktower.training.scoring import score_fn_for

__all__ = ["RunAlreadyFinished", "TrainResult", "TrainedRun", "load_run", "score_fn_for", "train_run"]
