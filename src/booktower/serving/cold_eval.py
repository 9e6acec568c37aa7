"""Cold-item evaluation: how well content-only vectors rank books the model never saw in training.

Protocol. Prepare the data as usual (leave-last-out). Draw a random `fraction` of the books and remove every one
of their interactions; prepare again from what is left and train on it. The readers whose (full-protocol) test
book is a held-out book are the targets: their history is everything they read apart from held-out books (all of
it earlier than the target). Each held-out book gets an item vector through the item tower's content path
(ID index -1), and the target book is ranked
  * among the whole catalogue (trained books + held-out books), the reader's read books masked, and
  * among the held-out books only (the question "which new book fits this reader?").
Baselines rank the same candidates by training popularity (held-out books have none: ties broken at random) and
at random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.config import BooktowerConfig
from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.ingest import RawData, load_raw
from booktower.data.prepare import prepare_from_raw
from booktower.data.types import PreparedData


@dataclass
class ColdSplit:
    """The reduced data to train on, the held-out books and the readers to score."""

    data: PreparedData  # prepared without any held-out book
    held_catalogue: pl.DataFrame  # standard catalogue rows of the held-out books (item_id, title, ...)
    target_users: np.ndarray  # (T,) user indices in `data`
    target_items: np.ndarray  # (T,) rows of `held_catalogue`
    n_held: int
    n_targets_lost: int  # targets whose reader did not survive pruning of the reduced data


def cold_split(config: BooktowerConfig, fraction: float, rng: np.random.Generator) -> ColdSplit:
    raw, _ = load_raw(config.data, DropLedger())
    return cold_split_raw(raw, config.data, fraction, rng)


def cold_split_raw(raw: RawData, config: DataConfig, fraction: float, rng: np.random.Generator) -> ColdSplit:
    full = prepare_from_raw(raw, config, DropLedger())
    held = np.sort(rng.choice(full.n_items, size=max(1, math.ceil(fraction * full.n_items)), replace=False))
    held_ids = full.items.decode(held)
    is_target = np.isin(full.split.test.item, held)
    target_user_ids = full.users.decode(full.split.test.user[is_target])
    target_item_ids = full.items.decode(full.split.test.item[is_target])

    kept = raw.interactions.filter(~pl.col("item_id").cast(pl.String).is_in(held_ids))
    data = prepare_from_raw(RawData(kept, raw.catalogue, raw.users, raw.input_paths), config, DropLedger())
    catalogue = pl.DataFrame({"item_id": held_ids})
    if raw.catalogue is not None:
        catalogue = catalogue.join(raw.catalogue.with_columns(pl.col("item_id").cast(pl.String)), on="item_id",
                                   how="left", maintain_order="left")
    users = data.users.encode(target_user_ids, unknown="null")
    row_of = {raw_id: r for r, raw_id in enumerate(held_ids)}
    items = np.array([row_of[i] for i in target_item_ids], dtype=np.int64)
    alive = users >= 0
    return ColdSplit(data, catalogue, users[alive], items[alive], len(held_ids), int((~alive).sum()))


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


def score_cold(split: ColdSplit, model: Any, rng: np.random.Generator, ks: list[int]) -> dict[str, Any]:
    """Metrics of the model's content-only vectors and of the popularity and random baselines."""
    from booktower.data.featurize import transform_items
    from booktower.models.encode import encode_items, encode_users

    data = split.data
    warm = encode_items(model, data.item_features).cpu().numpy()  # (n, d)
    cold_features = transform_items(data.feature_spec, split.held_catalogue)
    cold = encode_items(model, cold_features, np.full(split.n_held, -1)).cpu().numpy()  # (h, d)
    candidates = np.concatenate([warm, cold])  # (n + h, d): cold book r is candidate n + r
    history, _ = data.histories("train", "valid", "test")
    users = encode_users(model, data.user_features, split.target_users, history).cpu().numpy()  # (T, d)
    popularity = np.concatenate([data.item_popularity(), np.zeros(split.n_held)]).astype(np.float64)

    n = data.n_items
    systems = {"two-tower content": None, "popularity": popularity, "random": None}
    ranks: dict[str, dict[str, list[int]]] = {name: {"all": [], "cold": []} for name in systems}
    for row, (user, item) in enumerate(zip(split.target_users, split.target_items)):
        seen = history.row(user)
        target = n + int(item)
        for name in systems:
            if name == "two-tower content":
                scores = candidates @ users[row]  # (n + h,)
            elif name == "popularity":
                scores = popularity
            else:
                scores = rng.random(n + split.n_held)
            ranks[name]["all"].append(rank_of_target(scores, target, seen, rng))
            ranks[name]["cold"].append(rank_of_target(scores[n:], int(item), np.zeros(0, dtype=np.int64), rng))
    return {
        name: {scope: hit_metrics(np.asarray(r), ks) for scope, r in by_scope.items()}
        for name, by_scope in ranks.items()
    }


def run_cold_eval(config: BooktowerConfig, run_dir: Path, fraction: float = 0.05, ks: list[int] | None = None) -> dict[str, Any]:
    """Hold out, train on the rest (a normal run written into `run_dir`), score. Returns the numbers."""
    from booktower.training.pipeline import train_run

    ks = ks or [10, 20, 50]
    rng = np.random.default_rng(config.seed)
    split = cold_split(config, fraction, rng)
    result = train_run(config, run_dir, data=split.data)
    metrics = score_cold(split, result.model.cpu().eval(), rng, ks)
    return {
        "fraction": fraction, "n_held_books": split.n_held, "n_targets": len(split.target_users),
        "n_targets_lost_to_pruning": split.n_targets_lost, "n_catalogue": split.data.n_items + split.n_held,
        "warm_test_metrics": result.metrics.get("test", {}), "cold": metrics,
    }
