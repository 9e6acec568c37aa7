"""What both blocks of a backtest share (serving/backtest.py: known readers; serving/backtest_new_readers.py: new
readers): the most-read list with each reader's books masked, the metrics of each reader's list, and the model's
lead over the most-read list, paired reader by reader."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from booktower.data.types import Ragged
from booktower.evaluation.metrics import hit_matrix, hit_rate, ndcg, recall
from booktower.evaluation.stats import mean_ci
from booktower.serving.service import Recommender


def most_read_lists(rec: Recommender, masked: Sequence[np.ndarray], k: int) -> np.ndarray:
    """(R, k) the `/popular` list with each reader's books (`masked[r]`, item indices) left out, withdrawn books
    never listed; -1 past its end."""
    order = np.lexsort((np.arange(rec.n_items), -rec.parts.popularity))
    order = order[~rec.parts.withdrawn[order]]
    out = np.full((len(masked), k), -1, dtype=np.int64)
    for row, read in enumerate(masked):
        head = order[: k + len(read)]
        head = head[~np.isin(head, read)][:k]
        out[row, : len(head)] = head
    return out


def per_reader_metrics(items: np.ndarray, targets: Ragged, readers: np.ndarray, n_targets: np.ndarray,
                       ks: list[int]) -> dict[str, np.ndarray]:
    """NAME@K -> (R,) values of each reader's list `items` (R, k), -1 where it ran out, against their targets
    (row `readers[r]` of `targets`): HR@K (any target in the top K), Recall@K, NDCG@K."""
    hits = hit_matrix(np.maximum(items, 0), targets, readers) & (items >= 0)
    values = {}
    for k in ks:
        values[f"HR@{k}"] = hit_rate(hits, k)
        values[f"Recall@{k}"] = recall(hits, n_targets, k)
        values[f"NDCG@{k}"] = ndcg(hits, n_targets, k)
    return values


def paired_leads(model: dict[str, np.ndarray], popular: dict[str, np.ndarray], seed: int, samples: int,
                 block: str = "") -> dict[str, tuple[float, float, float]]:
    """NAME -> (mean, low, high) of the model's lead over the most-read list on the same readers (a bootstrap CI).
    One generator per metric, seeded from the block's and the metric's names: a metric's interval depends neither
    on the other metrics asked nor on the other block."""
    return {name: mean_ci(model[name] - popular[name], metric_rng(seed, block + name), samples) for name in model}


def metric_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, *name.encode()])
