"""Known readers' reads of books the bundle does not hold (books `prepare` pruned for too few readers, or left out
of the catalogue), kept so that a book added later with `index add` is never recommended back to a reader who read
it: served lists promise never to repeat a book the reader has read.

`export` collects them by reading the run's log again (`outside_reads.parquet`: reader index, book id, earliest
read first); every later write of the bundle moves the reads of books it now holds into the readers' histories.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from booktower.data.types import Ragged
from booktower.data.vocab import Vocabulary

if TYPE_CHECKING:
    from booktower.config.data import DataConfig
    from booktower.serving.bundle import BundleParts

log = logging.getLogger(__name__)

OUTSIDE_READS = "outside_reads.parquet"


def collect_outside_reads(data: DataConfig, users: Vocabulary, items: Vocabulary) -> pl.DataFrame | None:
    """(user, item_id) for every read in the run's log by a reader the bundle knows of a book it does not hold;
    None, with a warning, when the log cannot be read again (moved, or changed since training)."""
    from booktower.data.errors import DataError, DropLedger
    from booktower.data.ingest import load_raw

    quiet = logging.getLogger("booktower.data")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its warnings were given at prepare; this is a second read of the same files
    # a book missing from the catalogue is one `index add` may add later, from a fuller catalogue: keep its reads
    data = data.model_copy(update={"drop_items_missing_from_catalogue": False})
    try:
        raw, _ = load_raw(data, DropLedger(strict=False))
    except (DataError, OSError) as exc:
        log.warning("the run's log could not be read again (%s): books added later with `index add` may be "
                    "recommended to readers who read them before training", str(exc).splitlines()[0])
        return None
    finally:
        quiet.setLevel(level)
    by_time = [c for c in ("timestamp", "subsecond", "order") if c in raw.interactions.columns]
    frame = raw.interactions.sort(by_time, maintain_order=True)
    outside = frame.filter(pl.col("user_id").is_in(users.ids.implode()) & ~pl.col("item_id").is_in(items.ids.implode()))
    outside = outside.unique(["user_id", "item_id"], keep="first", maintain_order=True)
    return pl.DataFrame({"user": users.encode(outside["user_id"]).astype(np.int64),
                         "item_id": outside["item_id"].cast(pl.String)})


def write_outside_reads(reads: pl.DataFrame | None, folder: Path) -> None:
    from booktower.utils.atomic import atomic_write_parquet

    if reads is not None and reads.height:
        atomic_write_parquet(reads.select("user", "item_id"), folder / OUTSIDE_READS)


def read_outside_reads(path: Path, n_users: int) -> pl.DataFrame:
    """Raises ValueError on anything a writer would not have written (the caller names the file)."""
    frame = pl.read_parquet(path, columns=["user", "item_id"])
    if not frame["user"].dtype.is_integer() or frame["item_id"].dtype != pl.String:
        raise ValueError(f"user must be integer indices and item_id text, found {frame.dtypes}")
    if frame.height and (frame["user"].min() < 0 or frame["user"].max() >= n_users):
        raise ValueError(f"user indices must be within [0, {n_users})")
    return frame


def absorb_outside_reads(parts: BundleParts) -> BundleParts:
    """`parts` with the outside reads of books it now holds appended to their readers' histories (after the
    reads they had, since their times are not kept) and dropped from the outside reads."""
    reads = parts.outside_reads
    if reads is None or reads.height == 0:
        return parts
    held = reads["item_id"].is_in(parts.items.ids.implode())
    if not held.any():
        return parts
    moved = reads.filter(held)
    users = moved["user"].to_numpy().astype(np.int64)
    books = parts.items.encode(moved["item_id"]).astype(np.int64)
    owner = np.repeat(np.arange(parts.seen.n_rows, dtype=np.int64), np.diff(parts.seen.offsets))
    # grouped stably by reader: each reader's reads so far first, then the moved ones
    seen = Ragged.by_row(np.concatenate([owner, users]), np.concatenate([parts.seen.values, books]),
                         parts.seen.n_rows)
    log.info("%d earlier reads of %d added books by %d readers: those books are never recommended back to them",
             len(users), len(np.unique(books)), len(np.unique(users)))
    return replace(parts, seen=seen, outside_reads=reads.filter(~held))
