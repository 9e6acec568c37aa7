"""Hyper-parameter search configuration for `booktower sweep` (Optuna)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from booktower.config._base import StrictModel


class ParamSpec(StrictModel):
    """One searched config key (the key is the dotted config path, e.g. `training.loss.amm_user_weight`)."""

    type: Literal["float", "int", "categorical"]
    """Kind of value sampled."""
    low: float | None = None
    """float/int: lower bound (inclusive)."""
    high: float | None = None
    """float/int: upper bound (inclusive)."""
    log: bool = False
    """float/int: sample on a log scale."""
    step: float | None = None
    """float/int: grid step (None = continuous for floats, 1 for ints)."""
    choices: list[str | int | float | bool | None] | None = None
    """categorical: the values to choose from."""

    @model_validator(mode="after")
    def _check(self) -> "ParamSpec":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs low <= high")
        elif self.log and self.low <= 0:
            raise ValueError("log-scale parameters need low > 0")
        elif self.log and self.step is not None and (self.type == "float" or self.step != 1):
            # Optuna samples a log scale without a grid and would refuse it only at the first trial, after the
            # data is prepared.
            raise ValueError(f"a {self.type} parameter takes `step` or `log: true`, not both (Optuna cannot "
                             "sample a grid on a log scale). Fix: drop one of them")
        return self


class SweepConfig(StrictModel):
    """The search: space, objective (a validation metric; the test split is never read) and pruning."""

    space: dict[str, ParamSpec] = Field(default_factory=dict)
    """Dotted config key -> how to sample it."""
    metric: str = "NDCG@20"
    """Validation metric to maximise: NAME@K as for training.early_stopping.metric (checked when the sweep starts)."""
    pruner: Literal["median", "none"] = "median"
    """Stop unpromising trials early from their per-epoch validation metric."""
    startup_trials: int = Field(3, ge=0)
    """Trials that run to the end before the pruner may stop any."""
    warmup_epochs: int = Field(1, ge=0)
    """Epochs every trial runs before it may be pruned."""
