"""Ranking one held-out book per reader among a whole catalogue: its 1-based rank, and hit metrics from ranks.

For the protocols that score readers or books the trained model has no row for (new books, new readers), where
the usual evaluator's top-K lists over known readers do not apply.
"""

from __future__ import annotations

import numpy as np

from booktower.config import ConfigError
from booktower.config.data import DataConfig


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


def require_leave_last_out(config: DataConfig, protocol: str, harm: str) -> None:
    """These protocols score one test book per reader, their last read, with everything before it as the
    history: under another split a reader has several test books, and `harm` says what would go wrong."""
    if config.split.kind == "leave_last_out":
        return
    raise ConfigError(
        f"the {protocol} needs data.split.kind: leave_last_out, but the config has data.split.kind: "
        f"{config.split.kind}, under which a reader can have several test books: {harm}. Fix: run it with --set "
        "data.split.kind=leave_last_out (each reader's last read is then their test book)")
