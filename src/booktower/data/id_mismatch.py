"""Why interactions name books the catalogue lacks: the share of rows lost, example ids from each file, and ids
that differ only in how the two files write them (leading zeros, letter case, spaces, a trailing `.0`).

A catalogue exported through a spreadsheet drops leading zeros (`0001196` -> `1196`) or turns ids into floats
(`1196.0`); the log then matches few or no books, and without this diagnosis all that shows is a drop count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

SHARE_TO_WARN = 0.05
"""Dropping more than this share of interaction rows as unknown books is a warning, not just a count."""

# Normalisation stages, each undoing one more way of writing an id; the first stage at which a pair agrees names
# the difference. Whitespace includes a byte-order mark and zero-width spaces, which strip_chars leaves.
_STAGES = ("spaces", "letter case", "a trailing .0", "leading zeros")
_FIXES = {
    "spaces": "remove the spaces (or byte-order mark) around the ids",
    "letter case": "write the ids in one letter case in both files",
    "a trailing .0": "write the ids as integers, not floats (a tool read the id column as numbers)",
    "leading zeros": "pad or strip the leading zeros so both files write the ids alike (a tool that reads ids as "
                     "numbers drops them: read the column as text)",
}


def _stages(ids: pl.Expr) -> list[pl.Expr]:
    spaces = ids.str.replace_all(r"[\s\x{feff}\x{200b}]", "")
    case = spaces.str.to_lowercase()
    float_tail = case.str.replace(r"\.0+$", "")
    stripped = float_tail.str.strip_chars_start("0")
    zeros = pl.when(stripped == "").then(pl.lit("0")).otherwise(stripped)  # "000" is the id 0, not ""
    return [spaces, case, float_tail, zeros]


@dataclass(frozen=True)
class CatalogueMismatch:
    """Interaction rows whose book the catalogue lacks, and how many of them only differ in writing."""

    n_rows: int
    n_unknown: int
    log_examples: list[str]
    catalogue_examples: list[str]
    n_rewritten: int = 0
    """Unknown rows whose id matches a catalogue id once normalised."""
    differences: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Difference -> an example (log id, catalogue id) pair."""

    @property
    def share(self) -> float:
        return self.n_unknown / self.n_rows if self.n_rows else 0.0

    def worth_a_warning(self) -> bool:
        return self.share > SHARE_TO_WARN or self.n_rewritten > 0

    def describe(self, catalogue_path: Path | str) -> str:
        text = (f"{self.n_unknown:,} of {self.n_rows:,} interaction rows ({self.share:.1%}) name books that the "
                f"catalogue {catalogue_path} does not hold (item_not_in_catalogue), e.g. log ids "
                f"{self.log_examples} vs catalogue ids {self.catalogue_examples}")
        if not self.n_rewritten:
            return text
        ignoring = ", ".join(f"{kind} (log {log!r} = catalogue {cat!r})" for kind, (log, cat) in self.differences.items())
        return (f"{text}. {self.n_rewritten:,} of those rows match a catalogue id when ignoring {ignoring}: the two "
                "files write the same books' ids differently")

    def fix(self) -> str:
        if self.n_rewritten:
            return "; ".join(_FIXES[kind] for kind in self.differences) + ", then prepare again"
        return ("check that both files' id columns (data.columns.item, and data.columns.catalogue_item where the "
                "catalogue names its own) hold the same kind of id, add the books to the "
                "catalogue, or set data.drop_items_missing_from_catalogue: false")


def diagnose(log_ids: pl.Series, catalogue_ids: pl.Series, unknown: pl.Series) -> CatalogueMismatch:
    """`unknown`: True for the rows of `log_ids` whose id is not in `catalogue_ids`."""
    missing = log_ids.filter(unknown)
    distinct = missing.unique(maintain_order=True)
    # The other file's examples are ids the log never names: those beside the log's unknown ones show the mismatch
    unmatched = catalogue_ids.filter(~catalogue_ids.is_in(log_ids.implode()))
    examples = (unmatched if not unmatched.is_empty() else catalogue_ids).head(3).to_list()
    plain = CatalogueMismatch(log_ids.len(), missing.len(), distinct.head(3).to_list(), examples)
    if missing.is_empty():
        return plain
    log = pl.DataFrame({"log": distinct}).with_columns(
        [e.alias(f"log_{i}") for i, e in enumerate(_stages(pl.col("log")))])
    cat = pl.DataFrame({"cat": catalogue_ids}).with_columns(
        [e.alias(f"cat_{i}") for i, e in enumerate(_stages(pl.col("cat")))])
    last = len(_STAGES) - 1
    pairs = log.join(cat.unique(f"cat_{last}", keep="first", maintain_order=True),
                     left_on=f"log_{last}", right_on=f"cat_{last}", how="inner", maintain_order="left")
    if pairs.is_empty():
        return plain
    # The join matched on the last stage (its key column is merged away), so a pair differs there at the latest.
    first_equal = pl.coalesce([*(pl.when(pl.col(f"log_{i}") == pl.col(f"cat_{i}")).then(pl.lit(kind))
                                 for i, kind in enumerate(_STAGES[:last])), pl.lit(_STAGES[last])])
    pairs = pairs.with_columns(kind=first_equal)
    differences = {kind: (row["log"], row["cat"]) for kind in _STAGES
                   for row in pairs.filter(pl.col("kind") == kind).head(1).iter_rows(named=True)}
    n_rewritten = int(missing.is_in(pairs["log"].implode()).sum())
    return CatalogueMismatch(plain.n_rows, plain.n_unknown, plain.log_examples, plain.catalogue_examples,
                             n_rewritten, differences)


def users_warning(readers: pl.Series, users_ids: pl.Series, users_path: Path | str) -> str | None:
    """A warning when more than SHARE_TO_WARN of the log's readers have no row in the reader table, or some
    only differ from one in writing. Those readers are kept, but get the median / unknown user features, so a
    table keyed by other ids (0, 1, 2 vs u0000) silently adds nothing."""
    distinct = readers.unique(maintain_order=True)
    found = diagnose(distinct, users_ids, ~distinct.is_in(users_ids.implode()))
    if not found.worth_a_warning():
        return None
    text = (f"{found.n_unknown:,} of {found.n_rows:,} readers ({found.share:.1%}) have no row in the users table "
            f"{users_path}, so they get median/unknown user features, e.g. log ids {found.log_examples} vs users "
            f"ids {found.catalogue_examples}")
    if found.n_rewritten:
        ignoring = ", ".join(f"{kind} (log {log!r} = users {row!r})" for kind, (log, row) in found.differences.items())
        fix = "; ".join(_FIXES[kind] for kind in found.differences) + ", then prepare again"
        return (f"{text}. {found.n_rewritten:,} of those readers match a users id when ignoring {ignoring}: the two "
                f"files write the same readers' ids differently. Fix: {fix}")
    return (f"{text}. Fix: check that both files' user id columns (data.columns.user) hold the same kind of id, "
            "or add rows for those readers")
