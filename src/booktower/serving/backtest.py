"""A serving bundle scored on what its readers read after it was exported (`booktower backtest`): the check to run
each week on the live model, to see whether it still ranks well and when a retrain is due.

Protocol. The later log is read and validated as the training log was (the run's data config: columns,
separators, timestamp unit), every dropped row counted; rows outside [since, until) are left out when those are
given. A reader the bundle knows gets exactly the list the service serves them: the exported vector, every book
known at export masked, withdrawn books never listed, ranked exactly (serving/batch.py). Their targets are the
distinct books of the later log that the bundle holds, that they had not read at export and that are not
withdrawn. Readers the bundle does not know, books it does not hold, re-reads and withdrawn books are counted,
not scored here: the first two are what a retrain would add, and the last two can never be in a served list.

The same readers are scored on the bundle's most-read list (`/popular`, each reader's books masked) as a
baseline, and the model's lead over it is paired reader by reader (a bootstrap CI). The metrics are those of
evaluation/metrics.py with several targets a reader: HR@K (any target in the top K), Recall@K, NDCG@K.

Readers the bundle does not know are scored apart as new readers (serving/backtest_new_readers.py): served from
their first few later books, as the service answers an anonymous reader, and scored on the books after those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.types import Ragged
from booktower.serving.backtest_new_readers import (NEW_READER_HISTORY, ORDER_COLUMNS, NewReaderBacktest,
                                                    backtest_new_readers)
from booktower.serving.backtest_scoring import most_read_lists, paired_leads, per_reader_metrics
from booktower.serving.batch import ranked_blocks
from booktower.serving.service import Recommender
from booktower.utils.wording import counted

METRICS = ("HR", "Recall", "NDCG")


@dataclass
class Backtest:
    """What `backtest` measured on known readers: metrics of the model and of the most-read list, the model's
    paired lead on each (mean, low, high), and the counts of what was and was not scored; the same for new
    readers in `new_readers` (None: not asked for)."""

    ks: list[int]
    model: dict[str, float]
    popular: dict[str, float]
    lead: dict[str, tuple[float, float, float]]
    counts: dict[str, int]
    dropped: dict[str, int] = field(default_factory=dict)
    window: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    new_readers: NewReaderBacktest | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ks": self.ks, "model": self.model, "popular": self.popular,
                "lead_over_popular": {name: {"mean": m, "ci_low": lo, "ci_high": hi}
                                      for name, (m, lo, hi) in self.lead.items()},
                "counts": self.counts, "dropped_rows": self.dropped, "window": self.window, "warnings": self.warnings,
                "new_readers": self.new_readers.as_dict() if self.new_readers is not None else None}


def read_later_log(data: DataConfig, path: Path, since: datetime | None = None, until: datetime | None = None
                   ) -> tuple[pl.DataFrame, dict[str, int], dict[str, str | None]]:
    """(user_id, item_id, timestamp, and `subsecond` / `order` where the log has them: what orders a reader's
    reads) of the later log read with the training log's settings, the rows dropped by validation (by reason), and
    the window as applied. The catalogue and reader files are not read."""
    from booktower.data.ingest import load_raw

    if since is not None and until is not None and since >= until:
        raise DataError(f"--since {since.isoformat()} is not before --until {until.isoformat()}",
                        fix="give a window that holds time")
    if path.is_dir() and data.source.format != "movielens-100k":
        raise DataError("--log names a folder", path=path, fix="pass the file of reads logged since the export")
    source = data.source.model_copy(update={
        "interactions": path, "items": None, "users": None, "fallback_interactions": None, "fallback_items": None,
        # the training log's reader (the Amazon JSON-lines one streams only the mapped fields); a MovieLens folder's
        # reader takes a folder, so one file of its rows is read by its extension
        "format": "auto" if data.source.format == "movielens-100k" and not path.is_dir() else data.source.format})
    settings = data.model_copy(update={"source": source, "split": data.split.model_copy(update={"kind": "leave_last_out"})})
    ledger = DropLedger(strict=data.strict)
    raw, _ = load_raw(settings, ledger)
    order = [column for column in ORDER_COLUMNS if column in raw.interactions.columns]
    frame = raw.interactions.select("user_id", "item_id", *order)
    outside = pl.lit(False)
    if since is not None:
        outside = outside | (pl.col("timestamp") < int(since.timestamp()))
    if until is not None:
        outside = outside | (pl.col("timestamp") >= int(until.timestamp()))
    kept = frame.filter(~outside)
    if kept.is_empty() and not frame.is_empty():
        first, last = (datetime.fromtimestamp(int(t), UTC).isoformat() for t in (frame["timestamp"].min(),
                                                                              frame["timestamp"].max()))
        raise DataError(f"all {frame.height:,} reads fall outside the window (--since / --until): the log runs from "
                        f"{first} to {last}, read as {data.columns.timestamp_unit}", path=path,
                        fix="give a window inside that range, or check data.columns.timestamp_unit")
    dropped = ledger.as_dict()
    if kept.height < frame.height:
        dropped["outside_window"] = frame.height - kept.height
    window = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    return kept, dropped, window


def backtest(rec: Recommender, later: pl.DataFrame, ks: list[int], rng: np.random.Generator,
             samples: int = 1000, new_reader_history: int | None = NEW_READER_HISTORY) -> Backtest:
    """Score `rec`'s served lists and its most-read list on the readers' later reads (see the module doc); and
    readers it does not know on the lists it serves their first `new_reader_history` books (None: not scored)."""
    ks = sorted(set(ks))
    targets, counts = _targets(rec, later)
    warnings = id_hints(rec, later)
    readers = np.flatnonzero(targets.offsets[1:] > targets.offsets[:-1])
    # one seed for both blocks; each metric's interval draws from a generator of its own (backtest_scoring)
    seed = int(rng.integers(2**31))
    new = None
    if new_reader_history is not None:
        new = backtest_new_readers(rec, later, ks, new_reader_history, seed, samples)
    if len(readers) == 0 and (new is None or new.counts["readers_scored"] == 0):
        hints = "".join(f"; {hint}" for hint in warnings)
        newcomers = f"; new readers: {_describe(new.counts)}" if new is not None else ""
        raise DataError(f"no read in the later log can be scored ({_describe(counts)}{newcomers}){hints}",
                        fix=_nothing_scored_fix(counts, new is not None, bool(warnings)))
    if len(readers) == 0:
        warnings.append("no reader the bundle knows read a book it could have listed: only new readers are scored")
    model, popular, lead = _score_known(rec, targets, readers, ks, seed, samples) if len(readers) else ({}, {}, {})
    counts["readers_scored"] = len(readers)
    return Backtest(ks=ks, model=model, popular=popular, lead=lead, counts=counts, warnings=warnings, new_readers=new)


def _score_known(rec: Recommender, targets: Ragged, readers: np.ndarray, ks: list[int], seed: int, samples: int
                 ) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float, float]]]:
    """(model, most read, lead) of the known readers: their served lists and the most-read list, scored."""
    model_items = _served(rec, readers, max(ks))
    popular_items = most_read_lists(rec, [rec.parts.seen.row(int(reader)) for reader in readers], max(ks))
    n_targets = targets.offsets[readers + 1] - targets.offsets[readers]
    model_values = per_reader_metrics(model_items, targets, readers, n_targets, ks)
    popular_values = per_reader_metrics(popular_items, targets, readers, n_targets, ks)
    return ({name: float(values.mean()) for name, values in model_values.items()},
            {name: float(values.mean()) for name, values in popular_values.items()},
            paired_leads(model_values, popular_values, seed, samples))


def _nothing_scored_fix(counts: dict[str, int], new_readers_scored: bool, ids_hinted: bool) -> str:
    """The likeliest cause first: ids written another way, then readers left out of the new-reader block."""
    if ids_hinted:
        return "write the log's ids as the bundle writes them (see above), or pass reads by readers it knows"
    if not new_readers_scored and counts.get("readers_unknown_to_bundle"):
        unknown = counted(counts["readers_unknown_to_bundle"], "reader")
        return f"drop --no-new-readers: the {unknown} the bundle does not know are then scored as new readers"
    return "pass reads logged after the bundle's export, by readers it knows, of books it holds"


def id_hints(rec: Recommender, later: pl.DataFrame) -> list[str]:
    """Where the later log's reader or book ids the bundle lacks would match its ids once leading zeros, case,
    spaces or a trailing `.0` are ignored (a log exported by another tool), a warning per side, with examples."""
    from booktower.data.id_mismatch import diagnose

    hints = []
    for column, vocabulary, what in (("user_id", rec.parts.users, "reader"), ("item_id", rec.parts.items, "book")):
        ids = later[column]
        unknown = ~ids.is_in(vocabulary.ids.implode())
        if not unknown.any():
            continue
        mismatch = diagnose(ids, vocabulary.ids, unknown)
        if mismatch.n_rewritten:
            ignoring = ", ".join(f"{kind} (log {log!r} = bundle {ours!r})"
                                 for kind, (log, ours) in mismatch.differences.items())
            hints.append(f"{mismatch.n_rewritten:,} rows name a {what} the bundle holds once ignoring {ignoring}: "
                         "the later log writes ids differently from the training log; write them alike")
    return hints


def _targets(rec: Recommender, later: pl.DataFrame) -> tuple[Ragged, dict[str, int]]:
    """Each known reader's scorable later books (item indices, by reader index), and what was left out."""
    parts = rec.parts
    known_reader = later["user_id"].is_in(parts.users.ids.implode()).to_numpy()
    known_book = later["item_id"].is_in(parts.items.ids.implode()).to_numpy()
    pairs = later.filter(pl.Series(known_reader & known_book)).select("user_id", "item_id").unique(maintain_order=True)
    reader_index = np.asarray(parts.users.encode(pairs["user_id"].to_list()), dtype=np.int64)
    book_index = np.asarray(parts.items.encode(pairs["item_id"].to_list()), dtype=np.int64)
    seen = parts.seen
    read_before = _read_before(seen, reader_index, book_index, rec.n_items)
    withdrawn = parts.withdrawn[book_index] & ~read_before
    scored = ~read_before & ~withdrawn
    counts = {
        "rows": later.height,
        "readers_in_log": later["user_id"].n_unique(),
        "readers_unknown_to_bundle": later.filter(pl.Series(~known_reader))["user_id"].n_unique(),
        "rows_of_unknown_readers": int((~known_reader).sum()),
        "rows_of_books_not_in_bundle": int((known_reader & ~known_book).sum()),
        "pairs_read_before_export": int(read_before.sum()),
        "pairs_of_withdrawn_books": int(withdrawn.sum()),
        "targets": int(scored.sum()),
    }
    return Ragged.by_row(reader_index[scored], book_index[scored], len(parts.users)), counts


def _read_before(seen: Ragged, readers: np.ndarray, books: np.ndarray, n_items: int) -> np.ndarray:
    """Was `books[i]` among `readers[i]`'s books at export?"""
    if len(readers) == 0:
        return np.zeros(0, dtype=bool)
    owner = np.repeat(np.arange(seen.n_rows), np.diff(seen.offsets))
    keys = np.unique(owner.astype(np.int64) * n_items + seen.values.astype(np.int64))
    wanted = readers.astype(np.int64) * n_items + books.astype(np.int64)
    found = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    return (keys[found] == wanted) if len(keys) else np.zeros(len(wanted), dtype=bool)


def _served(rec: Recommender, readers: np.ndarray, k: int) -> np.ndarray:
    """(R, k) the served lists' item indices; -1 where a list ran out of candidates."""
    rows = []
    for _, scores, items in ranked_blocks(rec, readers, k):
        rows.append(np.where(np.isfinite(scores), items, -1))
    return np.concatenate(rows) if rows else np.zeros((0, k), dtype=np.int64)


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{name.replace('_', ' ')}: {value:,}" for name, value in counts.items())
