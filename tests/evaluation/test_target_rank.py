"""One held-out book per reader: its rank among the unmasked catalogue, ties at random, and metrics by hand."""

from __future__ import annotations

import numpy as np

from booktower.evaluation.target_rank import hit_metrics, rank_of_target


def test_rank_of_target_masks_and_breaks_ties() -> None:
    rng = np.random.default_rng(0)
    scores = np.array([0.9, 0.5, 0.7, 0.1])
    assert rank_of_target(scores, 2, np.array([0]), rng) == 1  # the better book is masked
    assert rank_of_target(scores, 3, np.zeros(0, dtype=np.int64), rng) == 4
    tied = [rank_of_target(np.zeros(4), 0, np.zeros(0, dtype=np.int64), rng) for _ in range(400)]
    assert set(tied) == {1, 2, 3, 4}


def test_hit_metrics_by_hand() -> None:
    metrics = hit_metrics(np.array([1, 3, 20]), [1, 10])
    assert metrics["HR@1"] == 1 / 3 and metrics["HR@10"] == 2 / 3
    assert np.isclose(metrics["NDCG@10"], (1.0 + 1.0 / np.log2(4)) / 3)
