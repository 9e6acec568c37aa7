"""Simple baselines under the same protocol and evaluator as the two-tower model."""

from booktower.evaluation.baselines.base import Recommender, interaction_matrix
from booktower.evaluation.baselines.ease import EASE
from booktower.evaluation.baselines.implicit_models import ALS, BPR
from booktower.evaluation.baselines.itemknn import ItemKNN
from booktower.evaluation.baselines.popularity import MostPopular
from booktower.evaluation.baselines.runner import (
    BASELINES,
    BaselineResult,
    make_baseline,
    run_baseline,
    run_baselines,
)

__all__ = [
    "ALS",
    "BASELINES",
    "BPR",
    "EASE",
    "BaselineResult",
    "ItemKNN",
    "MostPopular",
    "Recommender",
    "interaction_matrix",
    "make_baseline",
    "run_baseline",
    "run_baselines",
]
