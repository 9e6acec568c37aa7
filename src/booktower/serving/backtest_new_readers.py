"""New readers in a backtest: readers the bundle does not know, served from their first reads as a bookshop serves
a reader who has just arrived (`POST /recommendations`, `Recommender.answer_history`), scored on what they read next.

Protocol. A new reader is one whose id the bundle's readers lack: new since the export, or pruned at prepare for
too few reads (the log does not show what they read before the window). Their reads of books the bundle holds are
ordered by time (ties by data.columns.order, else by the log's order, as prepare orders them), each book once, at
its first read. The first `history` books are the history; the later ones are the targets, less withdrawn books
(never in a served list). The history is a fixed number of books, not a share of the reader's reads: a share would
make the history depend on how much the reader goes on to read (the future), and "after 3 books" is what a shop
knows of a reader at one moment, comparable from month to month and bundle to bundle.

The list is the service's own answer to that history (`answer_history(history, k)`, no filters, as a request
without them gets): the user tower encodes the history, the history's books are masked, withdrawn books are never
listed, and the bundle's index ranks (exact, in `booktower backtest`). Its most-read list masks the history's books
as `/popular?exclude=...` does. The model's lead over it is paired reader by reader, as for known readers.

Counted, not scored: reads of books the bundle does not hold (left out before the history is cut, as a history's
unknown ids are left out of the vector and the offline protocol's reduced catalogue leaves them out: the history is
`history` books the model can use), re-reads, readers with no more than `history` distinct books the bundle holds,
and later reads of withdrawn books. The offline counterpart, with readers held out of training, is
evaluation/new_readers.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from booktower.data.errors import DataError
from booktower.data.types import Ragged
from booktower.serving.backtest_scoring import most_read_lists, paired_leads, per_reader_metrics
from booktower.serving.service import Recommender

NEW_READER_HISTORY = 3
"""Books of a new reader's history by default: a reader who has just arrived has read few."""

ORDER_COLUMNS = ("timestamp", "subsecond", "order")
"""What orders a reader's reads, as prepare orders them; the log's row order breaks the remaining ties."""


@dataclass
class NewReaderBacktest:
    """What the new-reader block measured: as `Backtest` for known readers, on readers served from `history`
    books."""

    history: int
    model: dict[str, float]
    popular: dict[str, float]
    lead: dict[str, tuple[float, float, float]]
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"history": self.history, "model": self.model, "popular": self.popular,
                "lead_over_popular": {name: {"mean": m, "ci_low": lo, "ci_high": hi}
                                      for name, (m, lo, hi) in self.lead.items()},
                "counts": self.counts}


@dataclass
class NewReaderSplit:
    """The scored new readers: each one's history (book ids, oldest first) and targets (item indices, one row per
    reader, in the same order), and what was left out."""

    readers: list[str]
    histories: list[list[str]]
    targets: Ragged
    counts: dict[str, int]


def backtest_new_readers(rec: Recommender, later: pl.DataFrame, ks: list[int], history: int, seed: int,
                         samples: int = 1000) -> NewReaderBacktest:
    """Score the lists the service gives new readers from their first `history` books (see the module doc)."""
    split = split_new_readers(rec, later, history)
    readers = np.arange(len(split.readers))
    model, popular, lead = {}, {}, {}
    split.counts["history_reads_unpooled"] = 0
    if len(readers):
        served, split.counts["history_reads_unpooled"] = served_from_history(rec, split.histories, max(ks))
        most_read = most_read_lists(rec, [rec.parts.items.encode(h) for h in split.histories], max(ks))
        n_targets = np.diff(split.targets.offsets)
        model_values = per_reader_metrics(served, split.targets, readers, n_targets, ks)
        popular_values = per_reader_metrics(most_read, split.targets, readers, n_targets, ks)
        model = {name: float(values.mean()) for name, values in model_values.items()}
        popular = {name: float(values.mean()) for name, values in popular_values.items()}
        lead = paired_leads(model_values, popular_values, seed, samples, block="new readers ")
    split.counts["readers_scored"] = len(readers)
    return NewReaderBacktest(history, model, popular, lead, split.counts)


def split_new_readers(rec: Recommender, later: pl.DataFrame, history: int) -> NewReaderSplit:
    """Each new reader's first `history` books the bundle holds and the ones they read after (see the module doc)."""
    if history < 1:
        raise DataError(f"a new reader's history of {history} books holds nothing to serve from",
                        fix="give --new-reader-history 1 or more (or --no-new-readers)")
    if history > rec.config.max_history:
        raise DataError(f"a new reader's history of {history} books is more than the service accepts "
                        f"(serving.max_history {rec.config.max_history})", fix="give a smaller --new-reader-history")
    new = later.filter(~pl.col("user_id").is_in(rec.parts.users.ids.implode()))
    by_time = [column for column in ORDER_COLUMNS if column in new.columns]
    new = new.with_row_index("_row").sort([*by_time, "_row"])
    held = new.filter(pl.col("item_id").is_in(rec.parts.items.ids.implode()))
    first = held.unique(["user_id", "item_id"], keep="first", maintain_order=True)
    books = first.group_by("user_id", maintain_order=True).agg("item_id")
    counts = {"readers": new["user_id"].n_unique(), "rows": new.height,
              "rows_of_books_not_in_bundle": new.height - held.height, "re_reads": held.height - first.height,
              "readers_with_too_few_reads": new["user_id"].n_unique() - books.height, "pairs_of_withdrawn_books": 0,
              "readers_without_target": 0}
    readers, histories, targets = [], [], []
    for reader, read in books.iter_rows():
        if len(read) <= history:
            counts["readers_with_too_few_reads"] += 1
            continue
        after = rec.parts.items.encode(read[history:])
        withdrawn = rec.parts.withdrawn[after]
        counts["pairs_of_withdrawn_books"] += int(withdrawn.sum())
        if withdrawn.all():
            counts["readers_without_target"] += 1
            continue
        readers.append(reader)
        histories.append(read[:history])
        targets.append(after[~withdrawn].tolist())
    counts["history_reads"] = history * len(readers)
    counts["targets"] = sum(map(len, targets))
    return NewReaderSplit(readers, histories, Ragged.from_lists(targets), counts)


def served_from_history(rec: Recommender, histories: list[list[str]], k: int) -> tuple[np.ndarray, int]:
    """((R, k) the item indices the service answers each history with, -1 where a list ran out; how many history
    books it could not pool into the vector: books added by `index add` to a model without model.history.content)."""
    asking = _up_to(rec, k)
    out = np.full((len(histories), k), -1, dtype=np.int64)
    unpooled = 0
    for row, read in enumerate(histories):
        answer = asking.answer_history(read, k)
        listed = rec.parts.items.encode([item.item_id for item in answer.items])
        out[row, : len(listed)] = listed
        unpooled += len(answer.unpooled_history)
    return out, unpooled


def _up_to(rec: Recommender, k: int) -> Recommender:
    """`rec`, answering up to `k` books a request: serving.max_k limits what a request may ask, not how the
    service ranks, and the backtest's cut-offs may go past it. The same bundle, index and encoder."""
    if k <= rec.config.max_k:
        return rec
    asking = copy.copy(rec)
    asking.config = rec.config.model_copy(update={"max_k": k})
    return asking
