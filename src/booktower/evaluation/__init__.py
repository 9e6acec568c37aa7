"""Honest evaluation: exact full-catalogue ranking, metrics, summaries, baselines, diagnostics and the report."""

from booktower.evaluation.evaluator import EvaluationResult, evaluate_split, parts_for
from booktower.evaluation.ranking import ScoreFn, TopK, known_items, rank_top_k

__all__ = ["EvaluationResult", "ScoreFn", "TopK", "evaluate_split", "known_items", "parts_for", "rank_top_k"]
