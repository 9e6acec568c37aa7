"""Evaluation and baseline configuration."""

from __future__ import annotations

import difflib

from pydantic import Field, field_validator

from booktower.config._base import StrictModel


RANKING_METRICS = ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP", "coverage")
"""What evaluation reports at every K that is better when higher, i.e. what a run or a sweep may select on
(`popularity@K`, the mean popularity percentile of a list, is reported too, but is not a quality to maximise)."""


def selection_metrics(ks: list[int]) -> list[str]:
    """NAME@K for every selectable metric and cut-off."""
    return [f"{name}@{k}" for k in ks for name in RANKING_METRICS]


def check_selection_metric(key: str, metric: str, ks: list[int]) -> None:
    """Raise ValueError, naming `key`, unless validation reports `metric` at these cut-offs."""
    choices = selection_metrics(ks)
    if metric in choices:
        return
    close = difflib.get_close_matches(metric, choices, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"{key}: {metric!r} is not a validation metric here{hint}; choose NAME@K with NAME one of "
                     f"{', '.join(RANKING_METRICS)} and K in evaluation.ks {ks}")


class EvaluationConfig(StrictModel):
    """Full-catalogue ranking evaluation."""

    ks: list[int] = Field(default_factory=lambda: [10, 20, 50])
    """Cut-offs for every @K metric."""
    user_chunk: int = Field(4096, ge=1)
    """Users scored per matrix product (bounds memory)."""
    bootstrap_samples: int = Field(1000, ge=10)
    """Bootstrap resamples for confidence intervals and paired tests."""
    audit_users: int = Field(5, ge=0)
    """Users shown in the recommendation audit."""

    @field_validator("ks")
    @classmethod
    def _positive_sorted(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("evaluation.ks must be a non-empty list of positive integers")
        return sorted(set(ks))


class BaselineConfig(StrictModel):
    """Simple baselines, fitted on the same training data."""

    ease_lambda: float = Field(500.0, gt=0)
    """EASE L2 regularisation."""
    ease_max_items: int = Field(20000, ge=1)
    """EASE runs on the N most popular items (others score 0) so memory stays bounded."""
    itemknn_neighbors: int | None = Field(None, ge=1)
    """ItemKNN: keep this many neighbours per item (None = all)."""
    als_factors: int = Field(128, ge=1)
    """ALS: latent factors."""
    als_regularization: float = Field(0.05, ge=0)
    """ALS: L2 regularisation."""
    als_alpha: float = Field(2.0, gt=0)
    """ALS: confidence scaling of implicit feedback."""
    als_iterations: int = Field(15, ge=1)
    """ALS: alternating least-squares sweeps."""
    bpr_factors: int = Field(128, ge=1)
    """BPR: latent factors."""
    bpr_learning_rate: float = Field(0.01, gt=0)
    """BPR: SGD learning rate."""
    bpr_regularization: float = Field(0.01, ge=0)
    """BPR: L2 regularisation."""
    bpr_iterations: int = Field(100, ge=1)
    """BPR: epochs of SGD."""
