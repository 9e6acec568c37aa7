"""Cold-item evaluation: how well content-only vectors rank books the model never saw in training.

Protocol. Prepare the data as usual (leave-last-out: one test book per reader, their last read; any other split
is refused). Draw a random `fraction` of the books and remove every one of their interactions; prepare again from
what is left and train on it. The readers whose (full-protocol) test book is a held-out book are the targets: the
model reads everything they read apart from held-out books (all of it earlier than the target). Each held-out book
gets an item vector through the item tower's content path (ID index -1), and the target book is ranked
  * among the whole catalogue (trained books + held-out books), and
  * among the held-out books only (the question "which new book fits this reader?"),
in both with every book the reader read before it masked: trained books and held-out books alike (the full data's
train + validation, mapped to the candidates). Baselines rank the same candidates by training popularity
(held-out books have none: ties broken at random) and at random.
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
from booktower.data.types import PreparedData, Ragged
from booktower.evaluation.target_rank import hit_metrics, rank_of_target, require_leave_last_out

PROTOCOL = "cold-item evaluation"
HARM = ("the reader's reads after a target book would feed their vector, and their other test books would be "
        "neither scored nor masked")
"""What another split than leave-last-out would do to this protocol, said when it is refused."""


@dataclass
class ReadersOfNewBooks:
    """Readers who read held-out books before a test book the model trained on: the serving case of a reader whose
    history holds books added after training (`index add`)."""

    users: np.ndarray  # (R,) user indices in the reduced data
    items: np.ndarray  # (R,) their test book, an index in the reduced data
    histories: Ragged  # R rows: train + validation books, oldest first; held-out book r is index n_items + r


@dataclass
class ColdSplit:
    """The reduced data to train on, the held-out books and the readers to score."""

    data: PreparedData  # prepared without any held-out book
    held_catalogue: pl.DataFrame  # standard catalogue rows of the held-out books (item_id, title, ...)
    target_users: np.ndarray  # (T,) user indices in `data`
    target_items: np.ndarray  # (T,) rows of `held_catalogue`
    target_read: Ragged  # T rows: the books the reader read before the target, as candidates (held-out row r: n + r)
    n_held: int
    n_targets_lost: int  # targets whose reader did not survive pruning of the reduced data
    readers_of_new: ReadersOfNewBooks


def cold_split(config: BooktowerConfig, fraction: float, rng: np.random.Generator) -> ColdSplit:
    require_leave_last_out(config.data, PROTOCOL, HARM)  # before the log is read
    raw, _ = load_raw(config.data, DropLedger())
    return cold_split_raw(raw, config.data, fraction, rng)


def cold_split_raw(raw: RawData, config: DataConfig, fraction: float, rng: np.random.Generator) -> ColdSplit:
    require_leave_last_out(config, PROTOCOL, HARM)
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
    to_candidate = _candidate_index(full, data, held)
    before_test, _ = full.histories("train", "valid")  # each reader's books before their test book
    read = _as_candidates(before_test, to_candidate, full.split.test.user[is_target][alive])
    return ColdSplit(data, catalogue, users[alive], items[alive], read, len(held_ids), int((~alive).sum()),
                     _readers_of_new_books(full, data, before_test, to_candidate, held))


def _candidate_index(full: PreparedData, data: PreparedData, held: np.ndarray) -> np.ndarray:
    """(n_full,) each book of `full` among the scored candidates: its index in the reduced data, n + r for held-out
    book r (n: the reduced data's books), -1 where the reduced data pruned it."""
    to_candidate = data.items.encode(full.items.ids, unknown="null").copy()
    to_candidate[held] = data.n_items + np.arange(len(held))
    return to_candidate


def _as_candidates(history: Ragged, to_candidate: np.ndarray, users: np.ndarray) -> Ragged:
    """One row per entry of `users` (rows of `history`, a full-data history): their books, oldest first, as
    candidates; books the reduced data pruned are left out (they are no candidates)."""
    rows = []
    for user in users:
        mapped = to_candidate[history.row(user)]
        rows.append(mapped[mapped >= 0].tolist())
    return Ragged.from_lists(rows)


def _readers_of_new_books(full: PreparedData, data: PreparedData, history: Ragged, to_candidate: np.ndarray,
                          held: np.ndarray) -> ReadersOfNewBooks:
    """The readers of `full` with a held-out book in their train + validation `history` and a test book the
    reduced data kept (the same book: it is still their last read), their histories mapped into the reduced data."""
    owner = np.repeat(np.arange(full.n_users), np.diff(history.offsets))
    read_new = np.zeros(full.n_users, dtype=bool)
    read_new[owner[np.isin(history.values, held)]] = True
    test = full.split.test
    users = data.users.encode(full.users.decode(test.user), unknown="null")  # (T,)
    items = to_candidate[test.item]
    reduced_test = np.full(data.n_users, -1)
    reduced_test[data.split.test.user] = data.split.test.item
    keep = read_new[test.user] & (users >= 0) & (items >= 0) & (items < data.n_items)
    keep[keep] = reduced_test[users[keep]] == items[keep]
    return ReadersOfNewBooks(users[keep], items[keep], _as_candidates(history, to_candidate, test.user[keep]))


def score_cold(split: ColdSplit, model: Any, rng: np.random.Generator, ks: list[int]) -> dict[str, Any]:
    """Metrics of the model's content-only vectors and of the popularity and random baselines."""
    from booktower.data.featurize import transform_items
    from booktower.models.encode import encode_items, encode_users

    data = split.data
    warm = encode_items(model, data.item_features).cpu().numpy()  # (n, d)
    cold_features = transform_items(data.feature_spec, split.held_catalogue)
    cold = encode_items(model, cold_features, np.full(split.n_held, -1)).cpu().numpy()  # (h, d)
    candidates = np.concatenate([warm, cold])  # (n + h, d): cold book r is candidate n + r
    # every book of the reader the reduced data kept: under leave-last-out all read before the (held-out) target
    history, _ = data.histories("train", "valid", "test")
    users = encode_users(model, data.user_features, split.target_users, history).cpu().numpy()  # (T, d)
    popularity = np.concatenate([data.item_popularity(), np.zeros(split.n_held)]).astype(np.float64)

    n = data.n_items
    systems = {"two-tower content": None, "popularity": popularity, "random": None}
    ranks: dict[str, dict[str, list[int]]] = {name: {"all": [], "cold": []} for name in systems}
    for row, item in enumerate(split.target_items):
        seen = split.target_read.row(row)  # (m,) trained and held-out books, as candidates
        cold_seen = seen[seen >= n] - n
        target = n + int(item)
        for name in systems:
            if name == "two-tower content":
                scores = candidates @ users[row]  # (n + h,)
            elif name == "popularity":
                scores = popularity
            else:
                scores = rng.random(n + split.n_held)
            ranks[name]["all"].append(rank_of_target(scores, target, seen, rng))
            ranks[name]["cold"].append(rank_of_target(scores[n:], int(item), cold_seen, rng))
    return {
        name: {scope: hit_metrics(np.asarray(r), ks) for scope, r in by_scope.items()}
        for name, by_scope in ranks.items()
    }


def score_new_books_in_histories(split: ColdSplit, model: Any, rng: np.random.Generator, k: int = 20) -> dict[str, Any]:
    """Readers of held-out books, encoded as the served anonymous reader: their history pooled without the new
    books (what a model without content pooling can do) and with them, by their content (model.history.content).
    Their test book is ranked among the whole catalogue, every book read masked. The two are compared per reader."""
    import copy

    from booktower.data.featurize import transform_items, user_features_from_history
    from booktower.evaluation.stats import paired_compare
    from booktower.models.encode import encode_items, encode_users

    readers, data = split.readers_of_new, split.data
    if model.history_content is None or len(readers.users) == 0:
        return {"n_readers": len(readers.users), "skipped": "the model does not pool a history's content"
                if model.history_content is None else "no test reader read a held-out book before"}
    cold_features = transform_items(data.feature_spec, split.held_catalogue)
    candidates = np.concatenate([encode_items(model, data.item_features).cpu().numpy(),
                                 encode_items(model, cold_features, np.full(split.n_held, -1)).cpu().numpy()])
    # as a served reader's: the new books have no training count (unknown, not 0)
    popularity = np.concatenate([data.item_popularity(), np.full(split.n_held, np.nan)])
    side = user_features_from_history(data.feature_spec, readers.histories, popularity)
    anonymous = np.full(len(readers.users), -1)
    known_only = Ragged.from_lists([[i for i in readers.histories.row(r).tolist() if i < data.n_items]
                                    for r in range(readers.histories.n_rows)])
    extended = copy.deepcopy(model)
    extended.add_content_only_books(extended.history_content.codes_of(cold_features))
    vectors = {"without new books": encode_users(model, side, anonymous, known_only).cpu().numpy(),
               "with new books": encode_users(extended, side, anonymous, readers.histories).cpu().numpy()}
    frames = {}
    for name, users in vectors.items():
        ranks = np.array([rank_of_target(candidates @ users[r], int(item), readers.histories.row(r), rng)
                          for r, item in enumerate(readers.items)])
        frames[name] = pl.DataFrame({"user_id": readers.users, "item_id": readers.items,
                                     f"NDCG@{k}": np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0),
                                     f"HR@{k}": (ranks <= k).astype(np.float64)})
    rows = [readers.histories.row(r) for r in range(readers.histories.n_rows)]
    new_books = np.array([(row >= data.n_items).sum() for row in rows])
    last_is_new = np.array([row[-1] >= data.n_items for row in rows])

    def compare(chosen: np.ndarray) -> dict[str, Any]:
        with_new, without = frames["with new books"].filter(chosen), frames["without new books"].filter(chosen)
        return {metric: paired_compare(with_new, without, metric, rng).as_dict() for metric in (f"NDCG@{k}", f"HR@{k}")}

    return {
        "n_readers": len(readers.users), "mean_new_books_read": float(new_books.mean()),
        "mean_history_length": float(np.diff(readers.histories.offsets).mean()),
        "all": compare(np.ones(len(rows), dtype=bool)),
        # Where a recency-weighted history looks first: the reader's latest book is a new one.
        "last_read_new": {"n_readers": int(last_is_new.sum()), **(compare(last_is_new) if last_is_new.any() else {})},
    }


def run_cold_eval(config: BooktowerConfig, run_dir: Path, fraction: float = 0.05, ks: list[int] | None = None,
                  seeds: list[int] | None = None) -> dict[str, Any]:
    """Hold out, train on the rest (a normal run written into `run_dir`; with several `seeds`, one run each in
    `run_dir/seed-S`, served as their ensemble), score. Returns the numbers."""
    from booktower.training.ensemble_run import train_served_model

    ks = ks or [10, 20, 50]
    rng = np.random.default_rng(config.seed)  # one split for every member: the base config's seed draws it
    split = cold_split(config, fraction, rng)
    model, warm = train_served_model(config, run_dir, split.data, seeds, ks)
    metrics = score_cold(split, model, rng, ks)
    return {
        "fraction": fraction, "n_held_books": split.n_held, "n_targets": len(split.target_users),
        "n_targets_lost_to_pruning": split.n_targets_lost, "n_catalogue": split.data.n_items + split.n_held,
        "seeds": seeds or [config.seed], "split_seed": config.seed, "warm_test_metrics": warm, "cold": metrics,
        "new_books_in_histories": score_new_books_in_histories(split, model, rng),
    }
