"""Data configuration: where the files are, which columns mean what, how to prune, split and featurise."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from booktower.config._base import StrictModel
from booktower.config._times import describe, parse_cutoff

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
    trimmed sample). It stands in only for the paths written in the same config file: a config that inherits, or
    a --set, that names `interactions` or `items` (even as data/users.csv) clears both fallbacks unless it sets
    them too, so a path you set that does not exist is an error, never a run on the sample."""
    fallback_items: Path | None = None
    """Used, with a warning, when `items` is the default data/books.csv and does not exist; cleared like
    `fallback_interactions`."""
    separator: str | None = None
    """CSV field separator of every file that has no separator of its own (below); None sniffs each file's from
    its header line. One character: `,` `;` `|`, or a tab (`"\\t"` in YAML, `\\t` or `tab` with --set)."""
    interactions_separator: str | None = None
    """CSV field separator of the `interactions` file only; None uses `separator`."""
    items_separator: str | None = None
    """CSV field separator of the `items` catalogue only; None uses `separator`."""
    users_separator: str | None = None
    """CSV field separator of the `users` table only; None uses `separator`."""
    encoding: Literal["utf8", "latin1", "cp1252"] = "utf8"
    """Text encoding of CSV files: `cp1252` for a spreadsheet's "CSV" saved on Windows (its quotes and dashes are
    bytes 0x80-0x9f, which `latin1` reads as invisible control characters)."""

    @field_validator("separator", "interactions_separator", "items_separator", "users_separator", mode="before")
    @classmethod
    def _one_character(cls, value: Any, info: ValidationInfo) -> Any:
        """Checked here, not when polars fails on the file after minutes of reading the others."""
        if value is None:
            return None
        text = str(value)
        text = "\t" if text in ("\\t", "tab") else text  # a shell passes `\t` through --set as two characters
        if len(text.encode("utf-8")) != 1 or text in ('"', "\n", "\r"):
            # YAML reads a bare `|` (or `>`) as an empty block scalar: the value arrives as ''.
            quote = " (YAML reads a bare | as empty text: quote it, e.g. '|')" if text == "" else ""
            raise ValueError(f"data.source.{info.field_name} must be one single-byte character such as ',', ';', "
                             f"'|' or a tab ('\\t'), got {text!r}{quote}")
        return text

    def separator_for(self, role: Literal["interactions", "items", "users"]) -> str | None:
        """The separator to read `role`'s file with (None: sniff it)."""
        own: str | None = getattr(self, f"{role}_separator")
        return own if own is not None else self.separator


class ColumnMapping(StrictModel):
    """Which source columns hold what. Defaults are the Amazon Reviews 2023 Books format."""

    user: str = "userId"
    """Reader id column in the interaction log."""
    item: str = "parent_asin"
    """Book id column of the interaction log, and of the catalogue unless `catalogue_item` names another."""
    catalogue_item: str | None = None
    """Book id column of the catalogue when it differs from the log's (e.g. `book_id` beside a log's `item_id`);
    None: the catalogue's is `item` too. Its values must match the log's book ids."""
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
    """Numeric columns that must not be negative: a negative value is set to missing (the book stays) and counted
    under `set_to_missing` as `negative_<column>`."""
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
        strays = [self._outside_item_numeric(key) for key in ("item_count_columns", "item_nonnegative")]
        if any(strays):
            raise ValueError("; ".join(s for s in strays if s))
        return self

    @property
    def catalogue_id(self) -> str:
        """The catalogue's book id column: `catalogue_item`, else `item`."""
        return self.catalogue_item or self.item

    def _outside_item_numeric(self, key: str) -> str | None:
        """Clearing `item_numeric` alone leaves the defaults of the other two lists in place: say where a
        stray name comes from and what to clear."""
        stray = [name for name in getattr(self, key) if name not in self.item_numeric]
        if not stray:
            return None
        origin = ("is the default, not set in your config" if key not in self.model_fields_set
                  else "is set in your config, or in a config it inherits from")
        return (f"data.columns.{key} lists {stray}, which data.columns.item_numeric {self.item_numeric} does not "
                f"hold ({key} {origin}): add them to item_numeric, or remove them from {key} "
                f"(e.g. --set data.columns.{key}=[])")


class SplitConfig(StrictModel):
    """How interactions are split into train / validation / test."""

    kind: Literal["leave_last_out", "time_cutoff", "column"] = "leave_last_out"
    """`leave_last_out`: per user, last = test, second-to-last = validation. `time_cutoff`: global cut times.
    `column`: labels from `columns.split`."""
    valid_start: datetime | None = None
    """time_cutoff: interactions at or after this time (and before `test_start`) are validation. An ISO-8601 date
    or time, quoted or not (2018-06-01, 2018-06-01T12:00:00+02:00); without an offset it is UTC."""
    test_start: datetime | None = None
    """time_cutoff: interactions at or after this time are test. Same format as `valid_start`."""
    labels: dict[str, Literal["train", "validation", "test"]] = Field(
        default_factory=lambda: {"train": "train", "validation": "validation", "valid": "validation", "test": "test"}
    )
    """column: how the split column's values map to parts."""

    @field_validator("valid_start", "test_start", mode="before")
    @classmethod
    def _iso_time(cls, value: Any, info: ValidationInfo) -> datetime | None:
        return parse_cutoff(value, f"data.split.{info.field_name}")

    @model_validator(mode="after")
    def _check(self) -> "SplitConfig":
        if self.kind != "time_cutoff":
            return self
        if self.valid_start is None or self.test_start is None:
            raise ValueError("split.kind=time_cutoff needs split.valid_start and split.test_start")
        # Compared as times, not text: offsets differ, and "2018-10" < "2018-9" as text.
        if self.valid_start >= self.test_start:
            raise ValueError(f"data.split.valid_start ({describe(self.valid_start)}) must be before "
                             f"data.split.test_start ({describe(self.test_start)}), or validation is empty")
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
    author_separator: str | None = None
    """What separates two authors in the author column (e.g. `;`). None: `;`, ` & ` and ` and ` do, and commas too
    unless the column holds "Surname, Forename" names (decided over the training books, saved with the model)."""

    @field_validator("author_separator", mode="before")
    @classmethod
    def _separator_not_empty(cls, value: Any) -> Any:
        """An empty separator would split every character into an author."""
        if value is not None and str(value) == "":
            raise ValueError("data.features.author_separator is empty: YAML reads a bare | (or >) as empty text; "
                             "quote it, e.g. '|', or leave the key out")
        return value
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
    """Any row that validation would drop, or value it would set to missing, becomes an error instead. Off, a
    timestamp, rating or order that cannot be read (`yesterday`, `five`, `nan`) drops its row, counted as
    `unparsable_<field>`, and a catalogue or reader number that cannot be read is set to missing, counted under
    `set_to_missing` (`catalogue_unparsable_<column>`); a column whose non-empty values are mostly unreadable is an
    error either way (a wrong unit or mapping, not bad rows)."""
    cache_dir: Path | None = Path(".booktower-cache")
    """Where prepared artefacts are cached (keyed by input hash + data config); None disables caching."""
