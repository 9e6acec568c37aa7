"""Data configuration: where the files are, which columns mean what, how to prune, split and featurise."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from booktower.config._base import StrictModel

TimestampUnit = Literal["s", "ms", "us", "ns", "iso"]
SourceFormat = Literal["csv", "parquet", "amazon2023-jsonl", "movielens-100k", "auto"]


class SourceConfig(StrictModel):
    """Input files. Relative paths resolve against the directory the command runs in."""

    format: SourceFormat = "auto"
    """How to read the files: `auto` picks by extension (.csv, .csv.gz, .tsv, .parquet, .jsonl, .jsonl.gz);
    `movielens-100k` reads a MovieLens-100K folder (u.data, u.item, u.user) given as `interactions`."""
    interactions: Path = Path("data/users.csv")
    """The interaction log (one row per user-item event)."""
    items: Path | None = Path("data/books.csv")
    """The book catalogue (one row per book, with metadata). Optional."""
    users: Path | None = None
    """A reader table with user-side metadata (one row per reader). Optional."""
    fallback_interactions: Path | None = None
    """Used, with a warning, when `interactions` is the default data/users.csv and does not exist (e.g. the bundled
    trimmed sample). A path you set that does not exist is an error, never a run on the sample."""
    fallback_items: Path | None = None
    """Used, with a warning, when `items` is the default data/books.csv and does not exist."""
    separator: str | None = None
    """CSV field separator; None sniffs it from the header line."""
    encoding: Literal["utf8", "latin1"] = "utf8"
    """Text encoding of CSV files."""


class ColumnMapping(StrictModel):
    """Which source columns hold what. Defaults are the Amazon Reviews 2023 Books format."""

    user: str = "userId"
    """Reader id column in the interaction log."""
    item: str = "parent_asin"
    """Book id column, in both the interaction log and the catalogue."""
    timestamp: str = "timestamp"
    """Event time column in the interaction log."""
    timestamp_unit: TimestampUnit = "ms"
    """Unit of `timestamp`: epoch seconds/ms/us/ns or ISO-8601 text."""
    order: str | None = None
    """Optional within-user order column (e.g. `seq_pos`) that breaks timestamp ties; else file order does."""
    rating: str | None = None
    """Optional rating column in the interaction log."""
    min_rating: float | None = None
    """With `rating`: interactions rated below this are not positives (dropped and counted)."""
    rating_range: tuple[float, float] = (1.0, 5.0)
    """Valid rating range; ratings outside it are dropped and counted."""
    split: str | None = None
    """Column holding train/validation/test labels, for `split.kind: column`."""
    item_title: str | None = "title"
    """Catalogue title column (plain text or a JSON-list string)."""
    item_author: str | None = "author"
    """Catalogue author column (comma-separated authors allowed)."""
    item_categories: str | None = "categories"
    """Catalogue category-path column (a JSON-list string or `a > b > c` / `a|b` text)."""
    item_numeric: list[str] = Field(default_factory=lambda: ["average_rating", "rating_number", "price"])
    """Numeric catalogue columns used as item features."""
    item_count_columns: list[str] = Field(default_factory=lambda: ["rating_number"])
    """Numeric columns that are counts (log1p before scaling)."""
    item_nonnegative: list[str] = Field(default_factory=lambda: ["price"])
    """Numeric columns that must not be negative: negative rows are dropped and counted."""
    item_categorical: list[str] = Field(default_factory=list)
    """Extra single-valued categorical catalogue columns (e.g. language)."""
    user_numeric: list[str] = Field(default_factory=list)
    """Numeric columns of the reader table."""
    user_categorical: list[str] = Field(default_factory=list)
    """Categorical columns of the reader table (e.g. gender, occupation)."""

    @model_validator(mode="after")
    def _check(self) -> "ColumnMapping":
        if self.min_rating is not None and self.rating is None:
            raise ValueError("columns.min_rating needs columns.rating (the column to compare against)")
        lo, hi = self.rating_range
        if lo > hi:
            raise ValueError(f"columns.rating_range must be (low, high), got ({lo}, {hi})")
        for name in self.item_count_columns + self.item_nonnegative:
            if name not in self.item_numeric:
                raise ValueError(f"column {name!r} is listed as count/non-negative but not in columns.item_numeric")
        return self


class SplitConfig(StrictModel):
    """How interactions are split into train / validation / test."""

    kind: Literal["leave_last_out", "time_cutoff", "column"] = "leave_last_out"
    """`leave_last_out`: per user, last = test, second-to-last = validation. `time_cutoff`: global cut times.
    `column`: labels from `columns.split`."""
    valid_start: str | None = None
    """time_cutoff: interactions at or after this ISO time (and before `test_start`) are validation."""
    test_start: str | None = None
    """time_cutoff: interactions at or after this ISO time are test."""
    labels: dict[str, Literal["train", "validation", "test"]] = Field(
        default_factory=lambda: {"train": "train", "validation": "validation", "valid": "validation", "test": "test"}
    )
    """column: how the split column's values map to parts."""

    @model_validator(mode="after")
    def _check(self) -> "SplitConfig":
        if self.kind == "time_cutoff" and (self.valid_start is None or self.test_start is None):
            raise ValueError("split.kind=time_cutoff needs split.valid_start and split.test_start")
        if self.kind == "time_cutoff" and self.valid_start > self.test_start:  # type: ignore[operator]
            raise ValueError("split.valid_start must not be after split.test_start")
        return self


class FeatureConfig(StrictModel):
    """Feature engineering; every statistic is fitted on the training split only."""

    categories_top_k: int = Field(512, ge=1)
    """Keep the k most frequent category nodes (each level of the path); rarer ones share an `other` bucket."""
    authors_top_k: int = Field(2048, ge=1)
    """Keep the k most frequent authors; rarer ones share an `other` bucket."""
    categorical_top_k: int = Field(256, ge=1)
    """Cap for every other categorical column."""
    category_level: int = Field(1, ge=0)
    """Which level of the category path labels an item for the Category Alignment Loss (0 = root)."""
    text_buckets: int = Field(2**15, ge=16)
    """Hash buckets for title tokens."""
    max_title_tokens: int = Field(32, ge=1)
    """Title tokens kept per book."""
    title_bigrams: bool = False
    """Also hash adjacent token pairs."""
    category_path: bool = True
    """Categories are a path (root first; every prefix is a feature level). False: an unordered set of tags
    (e.g. MovieLens genres), each its own level, and CAL uses the first tag."""


class DataConfig(StrictModel):
    """Everything about the input data."""

    source: SourceConfig = Field(default_factory=SourceConfig)
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    min_user_interactions: int = Field(5, ge=1)
    """Iterative k-core: readers with fewer interactions are pruned (counted)."""
    min_item_interactions: int = Field(5, ge=1)
    """Iterative k-core: books with fewer interactions are pruned (counted)."""
    drop_items_missing_from_catalogue: bool = True
    """Interactions whose book is absent from a given catalogue are dropped and counted."""
    strict: bool = False
    """Any row that validation would drop becomes an error instead."""
    cache_dir: Path | None = Path(".booktower-cache")
    """Where prepared artefacts are cached (keyed by input hash + data config); None disables caching."""
