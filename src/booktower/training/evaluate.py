"""The one door from training to the evaluator (full catalogue, validation masks train, test masks both)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from booktower.data.types import PreparedData
from booktower.evaluation import evaluate_split
from booktower.models.two_tower import TwoTower
from booktower.training.scoring import score_fn_for


def evaluate_model(model: TwoTower, data: PreparedData, part: Literal["validation", "test"], ks: list[int],
                   chunk: int = 4096, users: np.ndarray | None = None):
    """An `EvaluationResult` of the model on `part` (optionally a subset of users)."""
    return evaluate_split(score_fn_for(model, data, part), data, part, ks, chunk=chunk, users=users)
