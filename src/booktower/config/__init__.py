"""Validated configuration. The raw YAML stops here: everything below gets these typed objects."""

from booktower.config.data import ColumnMapping, DataConfig, FeatureConfig, SourceConfig, SplitConfig
from booktower.config.evaluation import BaselineConfig, EvaluationConfig
from booktower.config.loading import ConfigError, apply_overrides, dump_config, load_config
from booktower.config.model import DATConfig, HistoryConfig, ModelConfig, TowerConfig
from booktower.config.root import BooktowerConfig
from booktower.config.serving import IndexConfig, ServingConfig, TrackingConfig
from booktower.config.training import (
    EarlyStoppingConfig,
    LossConfig,
    NegativeConfig,
    OptimizerConfig,
    TrainingConfig,
)

__all__ = [
    "BaselineConfig", "BooktowerConfig", "ColumnMapping", "ConfigError", "DATConfig", "DataConfig",
    "EarlyStoppingConfig", "EvaluationConfig", "FeatureConfig", "HistoryConfig", "IndexConfig", "LossConfig",
    "ModelConfig", "NegativeConfig", "OptimizerConfig", "ServingConfig", "SourceConfig", "SplitConfig",
    "TowerConfig", "TrackingConfig", "TrainingConfig", "apply_overrides", "dump_config", "load_config",
]
