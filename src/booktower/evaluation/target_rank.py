"""Ranking one held-out book per reader among a whole catalogue: its 1-based rank, and hit metrics from ranks.

For the protocols that score readers or books the trained model has no row for (new books, new readers), where
the usual evaluator's top-K lists over known readers do not apply.
"""

from __future__ import annotations

import numpy as np


def rank_of_target(scores: np.ndarray, target: int, masked: np.ndarray, rng: np.random.Generator) -> int:
    """1-based rank of `target` among unmasked candidates; ties are broken uniformly at random."""
    valid = np.ones(len(scores), dtype=bool)
    valid[masked] = False
    valid[target] = True
    s = scores[valid]
    t = scores[target]
    greater = int((s > t).sum())
    ties = int((s == t).sum()) - 1
    return 1 + greater + (int(rng.integers(ties + 1)) if ties > 0 else 0)


def hit_metrics(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """HR@K and NDCG@K with one relevant book per reader, plus mean rank."""
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).mean()) if len(ranks) else 0.0
    out["mean_rank"] = float(ranks.mean()) if len(ranks) else 0.0
    return out
