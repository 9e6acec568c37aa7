"""The root config: one validated object made at the CLI edge."""

from __future__ import annotations

from pydantic import Field, model_validator

from booktower.config._base import StrictModel
from booktower.config.data import DataConfig
from booktower.config.evaluation import BaselineConfig, EvaluationConfig, check_selection_metric
from booktower.config.model import ModelConfig
from booktower.config.serving import ServingConfig, TrackingConfig
from booktower.config.sweep import SweepConfig
from booktower.config.training import TrainingConfig


class BooktowerConfig(StrictModel):
    """A whole run."""

    seed: int = 42
    """Seeds every generator of the run."""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    baselines: BaselineConfig = Field(default_factory=BaselineConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    """Search space for `booktower sweep`; ignored by other commands."""

    @model_validator(mode="after")
    def _early_stopping_metric_is_reported(self) -> "BooktowerConfig":
        """Checked at load, not after a first epoch of training. (`sweep.metric` is checked by `booktower sweep`:
        other commands ignore the sweep section.)"""
        check_selection_metric("training.early_stopping.metric", self.training.early_stopping.metric,
                               self.evaluation.ks)
        return self

    @model_validator(mode="after")
    def _optimiser_can_update_the_tables(self) -> "BooktowerConfig":
        has_tables = self.model.item.use_id or self.model.user.use_id
        if self.training.optimizer.kind == "adamw" and self.model.sparse_ids and has_tables:
            raise ValueError("training.optimizer.kind=adamw cannot update sparse embedding tables: set "
                             "model.sparse_ids=false or training.optimizer.kind=hybrid")
        return self
