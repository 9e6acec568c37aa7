"""New readers: how well a reader the model never trained on is served from their history alone.

Protocol. Prepare the data as usual (leave-last-out: one test book per reader, their last read; any other
split is refused). Draw a random `fraction` of the readers and remove every one of their interactions; prepare
again from the rest and train on it. Each held-out reader then arrives as an anonymous reader does at the API
(`POST /recommendations`): their train + validation books (those the reduced catalogue kept) are the history,
their test book the target, ranked over the whole catalogue with the history masked. The two-tower encodes
them as the bundle's encoder does (the user tower on the history and the history features, no reader
metadata); the item-based baselines, fitted on the reduced train + validation, fold them in from their books
(popularity, ItemKNN, EASE) with no refit. The same run's test metrics over its known readers are the
reference: a new reader is served as well as a known one where the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from booktower.config import BooktowerConfig
from booktower.config.data import DataConfig
from booktower.data.errors import DropLedger
from booktower.data.ingest import RawData, load_raw
from booktower.data.prepare import prepare_from_raw
from booktower.data.types import PreparedData, Ragged
from booktower.evaluation.target_rank import hit_metrics, rank_of_target, require_leave_last_out

FOLD_IN_BASELINES = ("pop", "itemknn", "ease")
PROTOCOL = "new-reader evaluation"
HARM = "one of them would be scored and the others neither scored nor masked"
"""What another split than leave-last-out would do to this protocol, said when it is refused."""


@dataclass
class NewReaders:
    """The reduced data to train on and the held-out readers to serve from their histories."""

    data: PreparedData  # prepared without any held-out reader
    histories: Ragged  # one row per scored reader: their train + validation books, oldest first (reduced indices)
    targets: np.ndarray  # (R,) their test book (reduced index)
    n_held: int  # readers held out
    n_lost: int  # held-out readers not scored: their test book, or every book they read, left the reduced data


def new_reader_split(raw: RawData, config: DataConfig, fraction: float, rng: np.random.Generator) -> NewReaders:
    require_leave_last_out(config, PROTOCOL, HARM)
    full = prepare_from_raw(raw, config, DropLedger())
    held = np.sort(rng.choice(full.n_users, size=max(1, math.ceil(fraction * full.n_users)), replace=False))
    held_ids = full.users.decode(held)
    kept = raw.interactions.filter(~pl.col("user_id").cast(pl.String).is_in(held_ids))
    data = prepare_from_raw(RawData(kept, raw.catalogue, raw.users, raw.input_paths), config, DropLedger())
    to_reduced = data.items.encode(full.items.ids, unknown="null")  # (n_full,) -1: not in the reduced data
    history, _ = full.histories("train", "valid")
    test = full.split.test
    target_of = np.full(full.n_users, -1)
    target_of[test.user] = to_reduced[test.item]
    rows, targets = [], []
    for user in held:
        books = to_reduced[history.row(user)]
        books = books[books >= 0]
        if target_of[user] >= 0 and len(books):
            rows.append(books.tolist())
            targets.append(target_of[user])
    return NewReaders(data, Ragged.from_lists(rows), np.asarray(targets, dtype=np.int64), len(held),
                      len(held) - len(rows))


def history_matrix(histories: Ragged, n_items: int) -> sp.csr_matrix:
    """(R, n_items) binary rows of the readers' books, as the baselines are fitted on."""
    matrix = sp.csr_matrix((np.ones(len(histories.values), dtype=np.float32), histories.values, histories.offsets),
                           shape=(histories.n_rows, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def two_tower_scores(model: Any, data: PreparedData, histories: Ragged, items: torch.Tensor) -> np.ndarray:
    """(R, n_items) scores of anonymous readers, as `ModelEncoder.user_vectors` encodes them, against the item
    vectors `items` (n_items, d)."""
    from booktower.data.featurize import user_features_from_history
    from booktower.models.encode import encode_users

    side = user_features_from_history(data.feature_spec, histories, data.item_popularity().astype(np.float64))
    users = encode_users(model, side, np.full(histories.n_rows, -1), histories)  # (R, d)
    return (users @ items.T).cpu().numpy()


def rank_new_readers(split: NewReaders, model: Any, baselines: dict[str, Any], rng: np.random.Generator,
                     chunk: int = 2048) -> dict[str, np.ndarray]:
    """Each system's (R,) ranks of the held-out readers' test books (`baselines`: fitted FoldIn models by name)."""
    from booktower.models.encode import encode_items

    matrix = history_matrix(split.histories, split.data.n_items)
    items = encode_items(model, split.data.item_features)  # (n_items, d) once, for every block of readers
    ranks: dict[str, list[int]] = {"two-tower": [], **{name: [] for name in baselines}}
    for start in range(0, len(split.targets), chunk):
        rows = range(start, min(start + chunk, len(split.targets)))
        histories = Ragged.from_lists([split.histories.row(r).tolist() for r in rows])
        with torch.no_grad():
            scores = {"two-tower": two_tower_scores(model, split.data, histories, items)}
        scores.update({name: baseline.score_histories(matrix[start : rows.stop]).numpy()
                       for name, baseline in baselines.items()})
        for name, table in scores.items():
            ranks[name] += [rank_of_target(table[i], int(split.targets[r]), split.histories.row(r), rng)
                            for i, r in enumerate(rows)]
    return {name: np.asarray(found) for name, found in ranks.items()}


def paired_against(ranks: dict[str, np.ndarray], system: str, k: int, rng: np.random.Generator) -> dict[str, Any]:
    """`system` against every other on the same readers: paired bootstrap and Wilcoxon on NDCG@k and HR@k."""
    from booktower.evaluation.stats import paired_compare

    def table(found: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"user_id": np.arange(len(found)), "item_id": np.zeros(len(found), dtype=np.int64),
                             f"NDCG@{k}": np.where(found <= k, 1.0 / np.log2(found + 1), 0.0),
                             f"HR@{k}": (found <= k).astype(np.float64)})

    ours = table(ranks[system])
    return {other: {metric: paired_compare(ours, table(found), metric, rng).as_dict()
                    for metric in (f"NDCG@{k}", f"HR@{k}")}
            for other, found in ranks.items() if other != system}


def fit_fold_in_baselines(config: BooktowerConfig, data: PreparedData) -> dict[str, Any]:
    """Popularity, ItemKNN and EASE fitted on the reduced train + validation (as test-time baselines are)."""
    from booktower.evaluation.baselines.base import interaction_matrix
    from booktower.evaluation.baselines.runner import make_baseline

    matrix = interaction_matrix(data.n_users, data.n_items, data.split.train, data.split.valid)
    return {name: make_baseline(name, config.baselines, config.seed).fit(matrix) for name in FOLD_IN_BASELINES}


def run_new_reader_eval(config: BooktowerConfig, run_dir: Path, fraction: float = 0.1,
                        ks: list[int] | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """Hold readers out, train on the rest (a normal run written into `run_dir`; with several `seeds`, one run
    each in `run_dir/seed-S`, served as their ensemble), serve them. Returns the numbers."""
    from booktower.training.ensemble_run import train_served_model

    ks = ks or [10, 20, 50]
    rng = np.random.default_rng(config.seed)  # one split for every member: the base config's seed draws it
    require_leave_last_out(config.data, PROTOCOL, HARM)  # before the log is read
    raw, _ = load_raw(config.data, DropLedger())
    split = new_reader_split(raw, config.data, fraction, rng)
    model, known = train_served_model(config, run_dir, split.data, seeds, ks)
    # the served model (the refit one, trained on train + validation as the baselines are fitted)
    ranks = rank_new_readers(split, model, fit_fold_in_baselines(config, split.data), rng)
    return {
        "fraction": fraction, "n_held_readers": split.n_held, "n_scored": len(split.targets),
        "n_lost": split.n_lost, "n_catalogue": split.data.n_items, "seeds": seeds or [config.seed],
        "known_readers_test_metrics": known,
        "new_readers": {name: hit_metrics(found, ks) for name, found in ranks.items()},
        "two_tower_against": paired_against(ranks, "two-tower", 20, rng),
    }
