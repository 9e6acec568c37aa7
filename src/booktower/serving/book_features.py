"""Which columns of a book the fitted model reads, and how a new-books file supplies them.

A model trained with `data.columns.item_numeric: [average_rating]` or `item_categorical: [language_code]` reads
`num:average_rating` / `cat:language_code` (the standard names ingest gives them). A new-books file may name such
a column either way (`average_rating` or `num:average_rating`). A feature the file lacks is filled as a training
book without that value was (numbers: the training median, plus the missing flag where training had missing
values; levels: none), and the warning says so: the new books' vectors change, so it must not be silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from booktower.data.features import ITEM_DERIVED, FeatureSpec

log = logging.getLogger(__name__)

STANDARD = ("item_id", "title", "author", "categories")


@dataclass(frozen=True)
class BookFeature:
    """One input of the item tower, as a catalogue column."""

    column: str  # what transform_items reads: title, author, categories, num:<name> or cat:<name>
    accepted: tuple[str, ...]  # the names a file may give it, in order of preference
    fill: str  # what a book without it gets

    @property
    def kind(self) -> str:
        return self.column.split(":", 1)[0] if ":" in self.column else "text"


def model_book_features(spec: FeatureSpec) -> list[BookFeature]:
    """The catalogue columns the fitted item tower reads (derived numbers such as title length excluded)."""
    features: dict[str, BookFeature] = {}
    if spec.item.text_buckets:
        features["title"] = BookFeature("title", ("title",), "no title words")
    for cat in spec.item.categorical:
        if cat.source == "author":
            features["author"] = BookFeature("author", ("author",), "no author level")
        elif cat.source in ("category_path", "category_tags"):
            features["categories"] = BookFeature("categories", ("categories",), "no category levels")
        elif cat.source.startswith("column:"):
            column = cat.source.removeprefix("column:")
            raw = column.removeprefix("cat:")
            features[column] = BookFeature(column, (column, raw), "no level, as a training book without one")
    for num in spec.item.numeric:
        if num.name not in ITEM_DERIVED:
            fill = "the training median" + (" (and the missing flag)" if num.missing_indicator else "")
            features[f"num:{num.name}"] = BookFeature(f"num:{num.name}", (f"num:{num.name}", num.name), fill)
    return list(features.values())


def source_column(frame: pl.DataFrame, feature: BookFeature) -> str | None:
    """The file's column for `feature` (the prefixed name wins when both are there), or None."""
    return next((name for name in feature.accepted if name in frame.columns), None)


def report_columns(frame: pl.DataFrame, features: list[BookFeature], path: Path | str) -> None:
    """Warn naming the model features the file lacks and how they are filled, and columns given twice; note the
    columns the model does not read."""
    missing = [f for f in features if source_column(frame, f) is None]
    if missing:
        log.warning("%s lacks %d of the %d book features the model reads: %s. The new books' vectors are computed "
                    "without them; add the columns (named as listed, or without the num:/cat: prefix) to use them",
                    path, len(missing), len(features), "; ".join(f"{f.column} -> {f.fill}" for f in missing))
    for feature in features:
        twice = [name for name in feature.accepted if name in frame.columns]
        if len(twice) > 1:
            log.warning("%s has both %s: %r is read for the model's %s", path, " and ".join(map(repr, twice)),
                        twice[0], feature.column)
    read = {name for f in features for name in f.accepted} | set(STANDARD)
    unused = [c for c in frame.columns if c not in read]
    if unused:
        log.info("%s: columns the model does not read are ignored: %s", path, unused[:20])


def with_absent_columns(spec: FeatureSpec, catalogue: pl.DataFrame) -> pl.DataFrame:
    """`catalogue` plus a null column for every num:/cat: feature it lacks (how transform_items fills a gap)."""
    absent = [f for f in model_book_features(spec) if f.kind in ("num", "cat") and f.column not in catalogue.columns]
    return catalogue.with_columns(pl.lit(None, dtype=pl.Float64 if f.kind == "num" else pl.String).alias(f.column)
                                  for f in absent)
