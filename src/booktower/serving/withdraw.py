"""Books taken out of what a bundle recommends, and put back, without re-exporting: out of stock, out of print,
a withdrawn edition (`booktower index withdraw` / `index restore`).

A withdrawn book stays in the bundle. Readers who read it are still described by it (their vectors and read lists
do not change), an anonymous reader's history may name it, and `/items/{id}/similar` still answers for it. It is
never returned: not to a known reader, not to an anonymous one, not as a similar book, not in batch lists. A
re-export over the bundle keeps the withdrawals of the books the new bundle still holds, and remembers the others
(the manifest's `pending_withdrawals`: books added with `index add` that the run's catalogue lacks), so that adding
them again adds them withdrawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from booktower.data.errors import DataError
from booktower.data.vocab import Vocabulary
from booktower.serving._lock import bundle_lock
from booktower.serving.bundle import BundleParts, is_bundle_folder, read_catalogue, read_manifest, rewrite_files
from booktower.serving.manifest import ITEMS, BundleError, CatalogueColumns
from booktower.utils.atomic import atomic_write_parquet
from booktower.utils.wording import counted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WithdrawalChange:
    """What one `index withdraw` or `index restore` did."""

    changed: int
    """Books whose state flipped."""
    unchanged: int
    """Books named that were already in the asked state."""
    unknown: list[str]
    """Ids named that the bundle does not hold (skipped with `ignore_unknown`)."""
    withdrawn_now: int
    n_items: int
    pending: int = 0
    """Withdrawn ids the bundle does not hold (dropped by a re-export), still remembered."""


def read_book_ids(path: Path, columns: CatalogueColumns | None = None) -> list[str]:
    """The ids of a books file (CSV, TSV, Parquet, JSON lines: `item_id` or the training catalogue's id
    column), stripped, blanks dropped, each once in file order."""
    from booktower.serving.add_books import read_table_of_books

    ids = read_table_of_books(Path(path), columns, what="books")["item_id"].cast(pl.String).str.strip_chars()
    blank = ids.is_null() | (ids == "")
    if blank.any():
        log.warning("%s: %s no id and %s skipped", path, counted(int(blank.sum()), "row has", "rows have"),
                    "was" if int(blank.sum()) == 1 else "were")
    return ids.filter(~blank).unique(maintain_order=True).to_list()


def change_withdrawn(bundle_dir: Path, ids: list[str], withdraw: bool, ignore_unknown: bool = False,
                     everything: bool = False) -> WithdrawalChange:
    """Withdraw (or restore) the books `ids` of the bundle, or every book with `everything`, under the bundle's
    exclusive lock, so concurrent changes queue and none is lost. Only items.parquet is rewritten (the other files
    carry over as they are, `rewrite_files`), and the new version is swapped in atomically. Ids the bundle does
    not hold are an error naming them, unless `ignore_unknown`."""
    bundle_dir = Path(bundle_dir)
    with bundle_lock(bundle_dir, exclusive=True):
        items, metadata, withdrawn = read_catalogue(bundle_dir)
        pending = read_manifest(bundle_dir).pending_withdrawals
        remembered = set(pending)
        # `everything`: the books not yet in the asked state, so that none counts as already there
        found = np.flatnonzero(withdrawn != withdraw) if everything else items.encode(ids, unknown="null")
        named_pending = set() if everything else {raw for raw, index in zip(ids, found.tolist())
                                                  if index < 0 and raw in remembered}
        unknown = [raw for raw, index in zip(ids, found.tolist()) if index < 0 and raw not in named_pending]
        if unknown and not ignore_unknown:
            raise DataError(f"{len(unknown):,} of the {len(ids):,} books named are not in the bundle {bundle_dir}, "
                            f"e.g. {unknown[:5]}{_written_differently(ids, found, items)}; nothing was changed",
                            fix="check the ids against the bundle's books (its vocab/items.parquet), or pass "
                                "--ignore-unknown to change the others (a stock list may name books it never had)")
        chosen = found[found >= 0]
        flags = withdrawn.copy()
        changed = int((flags[chosen] != withdraw).sum())
        flags[chosen] = withdraw
        # a restore forgets remembered withdrawals (all of them with `everything`); a withdrawal finds them there
        forgotten = (remembered if everything else named_pending) if not withdraw else set()
        still_pending = [raw for raw in pending if raw not in forgotten]
        if changed or forgotten:
            table = metadata.with_columns(pl.Series("withdrawn", flags))

            def write_flags(folder: Path) -> None:
                if changed:  # forgetting a pending id only changes the manifest
                    atomic_write_parquet(table, folder / ITEMS)

            rewrite_files(bundle_dir, {ITEMS} if changed else set(), write_flags, withdrawn_books=int(flags.sum()),
                          pending_withdrawals=still_pending)
    return WithdrawalChange(changed + len(forgotten), len(chosen) - changed + len(named_pending - forgotten), unknown,
                            int(flags.sum()), len(flags), len(still_pending))


def _written_differently(ids: list[str], found: np.ndarray, items: Vocabulary) -> str:
    """Why unknown ids may still name the bundle's books: written with a `.0`, other zeros, case or spaces."""
    from booktower.data.id_mismatch import diagnose

    named = pl.Series(ids, dtype=pl.String)
    mismatch = diagnose(named, items.ids, pl.Series(found < 0))
    if not mismatch.n_rewritten:
        return ""
    how = ", ".join(f"{kind} (named {mine!r} = bundle {theirs!r})" for kind, (mine, theirs) in mismatch.differences.items())
    return f" ({mismatch.n_rewritten:,} of them match a book when ignoring {how}: write them as the bundle does)"


def carry_withdrawals(old_bundle: Path, parts: BundleParts) -> None:
    """Before a bundle is replaced by a new export: its withdrawn books that the new one holds stay withdrawn,
    and the others (books added after training, which a re-export drops) are remembered as pending, so that
    `index add` adds them back withdrawn. Call it under the bundle's lock, so that no withdrawal lands between
    this read and the write."""
    if not is_bundle_folder(old_bundle):
        return
    try:
        manifest = read_manifest(old_bundle)
        if manifest.withdrawn_books == 0 and not manifest.pending_withdrawals:
            return
        old = pl.read_parquet(Path(old_bundle) / ITEMS, columns=["item_id", "withdrawn"])
    except (BundleError, OSError, pl.exceptions.PolarsError) as exc:
        log.warning("%s: its withdrawn books could not be read (%s); the new bundle withdraws none", old_bundle, exc)
        return
    withdrawn = list(dict.fromkeys(old.filter(pl.col("withdrawn"))["item_id"].to_list()
                                   + manifest.pending_withdrawals))
    found = parts.items.encode(withdrawn, unknown="null")
    kept = found[found >= 0]
    flags = parts.withdrawn.copy()
    flags[kept] = True
    parts.withdrawn = flags
    absent = [raw for raw, index in zip(withdrawn, found.tolist()) if index < 0]
    parts.info = {**parts.info, "pending_withdrawals": absent}
    log.warning("%s withdrew %d books; the new bundle keeps %d of those withdrawn (booktower index restore --bundle "
                "%s --all puts every book back)%s", old_bundle, len(withdrawn), len(kept), old_bundle,
                f". {len(absent)} are not in it (books added after training, e.g. {absent[:5]}): they are remembered, "
                "and `index add` adds them back withdrawn" if absent else "")


def withdrawn_on_arrival(parts: BundleParts, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """For books being added: which of them a re-export remembered as withdrawn (flags in `ids` order), and
    the ids that stay pending after they arrive."""
    pending = list(parts.info.get("pending_withdrawals") or [])
    if not pending:
        return np.zeros(len(ids), dtype=bool), []
    arriving, remembered = set(ids), set(pending)
    flags = np.fromiter((raw in remembered for raw in ids), dtype=bool, count=len(ids))
    return flags, [raw for raw in pending if raw not in arriving]
