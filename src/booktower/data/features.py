"""Feature engineering: fit a FeatureSpec on the training split only, then transform any rows with it.

The spec (medians, scales, kept levels, hashing parameters) is plain JSON so a served model can featurise new
books and anonymous readers exactly as in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from booktower.data.textparse import AuthorSplit, split_authors
from booktower.data.types import Ragged

OTHER = "<other>"
_CLIP = 5.0
ITEM_DERIVED = ("title_words", "title_chars", "train_popularity")
USER_DERIVED = ("train_interactions", "active_span_days", "mean_log_item_popularity")


@dataclass
class NumericSpec:
    name: str
    log: bool
    median: float
    scale: float
    missing_indicator: bool


@dataclass
class CategoricalSpec:
    name: str
    source: str  # "category_path", "category_tags", "author" or "column:<name>"
    levels: list[str]  # index 0 is OTHER


@dataclass
class SideSpec:
    numeric: list[NumericSpec] = field(default_factory=list)
    categorical: list[CategoricalSpec] = field(default_factory=list)
    text_buckets: int = 0
    max_title_tokens: int = 0
    title_bigrams: bool = False


@dataclass
class FeatureSpec:
    """Everything fitted on the training split that turns raw rows into features."""

    item: SideSpec
    user: SideSpec
    category_level: int
    category_path: bool
    category_names: list[str]
    author_split: AuthorSplit = field(default_factory=AuthorSplit)
    """How the author column became authors (a spec saved before it existed split on every comma)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "FeatureSpec":
        def side(d: dict[str, Any]) -> SideSpec:
            return SideSpec([NumericSpec(**n) for n in d["numeric"]], [CategoricalSpec(**c) for c in d["categorical"]],
                            d["text_buckets"], d["max_title_tokens"], d["title_bigrams"])
        return cls(side(obj["item"]), side(obj["user"]), obj["category_level"], obj["category_path"],
                   list(obj["category_names"]), AuthorSplit(**obj.get("author_split", {})))


# ---- numeric -------------------------------------------------------------------------------------------------

def finite_or_missing(raw: np.ndarray) -> np.ndarray:
    """`raw` as float64 with inf and -inf missing (NaN), like a value that could not be read: no statistic or
    scaled feature can use them, and clipping them to the range would make "infinite" the largest real value."""
    values = np.asarray(raw, dtype=np.float64)
    return np.where(np.isinf(values), np.nan, values)


def fit_numeric(name: str, raw: np.ndarray, fit_mask: np.ndarray, log: bool) -> NumericSpec:
    raw = finite_or_missing(raw)
    values = np.log1p(np.clip(raw, 0, None)) if log else raw
    fit = values[fit_mask & ~np.isnan(values)]
    median = float(np.median(fit)) if fit.size else 0.0
    iqr = float(np.subtract(*np.percentile(fit, [75, 25]))) if fit.size else 0.0
    std = float(fit.std()) if fit.size else 0.0
    scale = iqr if iqr > 1e-12 else (std if std > 1e-12 else 1.0)
    return NumericSpec(name, log, median, scale, bool(np.isnan(raw).any()))


def transform_numeric(specs: list[NumericSpec], columns: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    """Robust scaling (x - median) / IQR, missing -> 0 (the median) plus an indicator column, clipped to +-5."""
    blocks = []
    for spec in specs:
        raw = finite_or_missing(columns.get(spec.name, np.full(n_rows, np.nan)))
        values = np.log1p(np.clip(raw, 0, None)) if spec.log else raw
        blocks.append(np.nan_to_num(np.clip((values - spec.median) / spec.scale, -_CLIP, _CLIP), nan=0.0))
        if spec.missing_indicator:
            blocks.append(np.isnan(raw).astype(np.float64))
    return (np.stack(blocks, axis=1) if blocks else np.zeros((n_rows, 0))).astype(np.float32)


def numeric_names(specs: list[NumericSpec]) -> list[str]:
    names = []
    for spec in specs:
        names.append(spec.name)
        if spec.missing_indicator:
            names.append(f"{spec.name}_missing")
    return names


# ---- categorical ---------------------------------------------------------------------------------------------

def fit_levels(bags: pl.Series, fit_mask: np.ndarray, top_k: int) -> list[str]:
    """The top_k levels by number of training rows holding them (ties by name, so fitting is deterministic)."""
    frame = pl.DataFrame({"bag": bags, "fit": fit_mask}).with_row_index("row")
    counts = (
        frame.filter(pl.col("fit")).explode("bag").drop_nulls("bag").filter(pl.col("bag") != "")
        .group_by("bag").agg(pl.col("row").n_unique().alias("n"))
        .sort(["n", "bag"], descending=[True, False]).head(top_k)
    )
    return [OTHER, *counts["bag"].to_list()]


def encode_bags(bags: pl.Series, levels: list[str]) -> Ragged:
    """list[str] per row -> CSR of level ids; unseen or rare levels -> 0 (`<other>`), each id once per row."""
    frame = pl.DataFrame({"bag": bags}).with_row_index("row")
    exploded = frame.explode("bag").drop_nulls("bag").filter(pl.col("bag") != "")
    table = pl.DataFrame({"bag": levels[1:], "level": np.arange(1, len(levels), dtype=np.int64)},
                         schema={"bag": pl.String, "level": pl.Int64})
    coded = exploded.join(table, on="bag", how="left").with_columns(pl.col("level").fill_null(0))
    coded = coded.unique(["row", "level"], maintain_order=True).sort("row", maintain_order=True)
    lengths = np.bincount(coded["row"].to_numpy().astype(np.int64), minlength=frame.height).astype(np.int64)
    offsets = np.zeros(frame.height + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Ragged(offsets, coded["level"].to_numpy().astype(np.int64))


def category_nodes(categories: pl.Series, as_path: bool) -> pl.Series:
    """Every prefix of each category path (`Books`, `Books > Fiction`, ...), or the tags themselves."""
    if not as_path:
        return categories
    exploded = pl.DataFrame({"c": categories}).with_row_index("row").explode("c").drop_nulls("c")
    exploded = exploded.with_columns(depth=pl.int_range(pl.len()).over("row"))
    max_depth = int(exploded["depth"].max() or 0) + 1 if exploded.height else 0
    parts = []
    for depth in range(max_depth):
        # the prefix at `depth` joins the first depth+1 path elements of the row
        prefix = exploded.filter(pl.col("depth") <= depth).group_by("row", maintain_order=True).agg(
            pl.col("c").str.join(" > ").alias("node"), pl.len().alias("n"))
        parts.append(prefix.filter(pl.col("n") == depth + 1).select("row", "node", pl.lit(depth).alias("depth")))
    nodes = pl.concat(parts).sort(["row", "depth"]) if parts else pl.DataFrame(schema={"row": pl.UInt32, "node": pl.String})
    grouped = nodes.group_by("row", maintain_order=True).agg(pl.col("node"))
    full = pl.DataFrame({"row": pl.int_range(len(categories), dtype=pl.UInt32, eager=True)})
    return full.join(grouped, on="row", how="left").sort("row")["node"].fill_null([]).rename(categories.name)


def bags_for(source: str, table: pl.DataFrame, category_path: bool, authors: AuthorSplit) -> pl.Series:
    """`authors`: how to split the author column (the spec's `author_split`)."""
    if source in ("category_path", "category_tags"):
        return category_nodes(table["categories"], category_path)
    if source == "author":
        return split_authors(table["author"], authors)
    column = table[source.removeprefix("column:")].cast(pl.String)
    return column.to_frame().select(pl.concat_list(pl.col(column.name))).to_series()


def category_labels(categories: pl.Series, level: int, as_path: bool) -> pl.Series:
    """One label per item for CAL: the path prefix at `level` (or the first tag); null when absent."""
    if as_path:
        label = categories.list.head(level + 1).list.join(" > ")
        return pl.select(pl.when(categories.list.len() > level).then(label).otherwise(None)).to_series()
    return categories.list.first()


def category_ids(labels: pl.Series, names: list[str]) -> np.ndarray:
    table = pl.DataFrame({"label": names, "id": np.arange(len(names), dtype=np.int64)}, schema={"label": pl.String, "id": pl.Int64})
    ids = pl.DataFrame({"label": labels}).join(table, on="label", how="left", maintain_order="left")["id"]
    return ids.fill_null(-1).to_numpy().astype(np.int64)
