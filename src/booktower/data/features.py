"""Feature matrices, fitted on the training split only (statistics, top-k levels, user aggregates)."""

from __future__ import annotations

import numpy as np
import polars as pl

from booktower.config.data import FeatureConfig
from booktower.data.textparse import hash_tokens
from booktower.data.types import CategoricalField, Ragged, SideFeatures

OTHER = "<other>"
_CLIP = 5.0


def robust_scale(values: np.ndarray, fit_mask: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """(x - median) / IQR with statistics from the rows in `fit_mask`; missing -> 0 (the median); clipped."""
    fit = values[fit_mask & ~np.isnan(values)]
    median = float(np.median(fit)) if fit.size else 0.0
    iqr = float(np.subtract(*np.percentile(fit, [75, 25]))) if fit.size else 1.0
    scale = iqr if iqr > 1e-12 else (float(fit.std()) if fit.size and fit.std() > 1e-12 else 1.0)
    scaled = np.clip((values - median) / scale, -_CLIP, _CLIP)
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32), {"median": median, "scale": scale}


def _numeric_block(
    columns: dict[str, np.ndarray], log_columns: set[str], fit_mask: np.ndarray
) -> tuple[np.ndarray, list[str], dict[str, dict[str, float]]]:
    blocks, names, stats = [], [], {}
    for name, raw in columns.items():
        values = raw.astype(np.float64)
        if name in log_columns:
            values = np.log1p(np.clip(values, 0, None))
        scaled, stat = robust_scale(values, fit_mask)
        blocks.append(scaled)
        names.append(name)
        stats[name] = stat
        missing = np.isnan(raw)
        if missing.any():
            blocks.append(missing.astype(np.float32))
            names.append(f"{name}_missing")
    n = len(fit_mask)
    matrix = np.stack(blocks, axis=1) if blocks else np.zeros((n, 0), dtype=np.float32)
    return matrix.astype(np.float32), names, stats


def categorical_field(name: str, bags: pl.Series, fit_mask: np.ndarray, top_k: int) -> CategoricalField:
    """list[str] per row -> bags of level ids; the top_k levels by training-row frequency, the rest `<other>`."""
    frame = pl.DataFrame({"bag": bags, "fit": fit_mask}).with_row_index("row")
    exploded = frame.explode("bag").drop_nulls("bag").filter(pl.col("bag") != "")
    counts = (
        exploded.filter(pl.col("fit")).group_by("bag").agg(pl.col("row").n_unique().alias("n"))
        .sort(["n", "bag"], descending=[True, False]).head(top_k)
    )
    levels = [OTHER, *counts["bag"].to_list()]
    table = pl.DataFrame({"bag": levels[1:], "level": np.arange(1, len(levels), dtype=np.int64)})
    coded = exploded.join(table, on="bag", how="left").with_columns(pl.col("level").fill_null(0))
    coded = coded.unique(["row", "level"], maintain_order=True).sort("row", maintain_order=True)
    lengths = np.bincount(coded["row"].to_numpy(), minlength=frame.height).astype(np.int64)
    offsets = np.zeros(frame.height + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return CategoricalField(name, Ragged(offsets, coded["level"].to_numpy().astype(np.int64)), levels)


def category_nodes(categories: pl.Series, as_path: bool) -> pl.Series:
    """Every prefix of each category path (`Books`, `Books > Fiction`, ...), or the tags themselves."""
    if not as_path:
        return categories
    return pl.Series(
        categories.name,
        [[" > ".join(path[: i + 1]) for i in range(len(path))] for path in categories.to_list()],
        dtype=pl.List(pl.String),
    )


def category_at_level(categories: pl.Series, level: int, as_path: bool, fit_mask: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One label per item for CAL: the path prefix at `level` (or the first tag); -1 when absent."""
    if as_path:
        label = categories.list.head(level + 1).list.join(" > ")
        label = pl.select(pl.when(categories.list.len() > level).then(label).otherwise(None)).to_series()
    else:
        label = categories.list.first()
    names = sorted(set(label.filter(pl.Series(fit_mask)).drop_nulls().to_list()))
    table = pl.DataFrame({"label": names, "id": np.arange(len(names), dtype=np.int64)}, schema={"label": pl.String, "id": pl.Int64})
    ids = pl.DataFrame({"label": label}).join(table, on="label", how="left", maintain_order="left")["id"]
    return ids.fill_null(-1).to_numpy().astype(np.int64), names


def item_features(
    aligned: pl.DataFrame, train_counts: np.ndarray, config: FeatureConfig, numeric_columns: list[str],
    count_columns: list[str], categorical_columns: list[str],
) -> tuple[SideFeatures, np.ndarray, list[str]]:
    """`aligned`: the catalogue in item-index order (item_id, title, author, categories, num:*, cat:*)."""
    fit_mask = train_counts > 0
    titles = aligned["title"].fill_null("")
    numeric = {name: aligned[f"num:{name}"].cast(pl.Float64).to_numpy() for name in numeric_columns}
    numeric["title_words"] = titles.str.count_matches(r"[^\W_]+").cast(pl.Float64).to_numpy()
    numeric["title_chars"] = titles.str.len_chars().cast(pl.Float64).to_numpy()
    numeric["train_popularity"] = train_counts.astype(np.float64)
    logs = set(count_columns) | {"title_words", "title_chars", "train_popularity"}
    matrix, names, _ = _numeric_block(numeric, logs, fit_mask)

    fields = []
    categories = aligned["categories"]
    if categories.list.len().sum():
        fields.append(categorical_field("category", category_nodes(categories, config.category_path), fit_mask,
                                        config.categories_top_k))
    authors = aligned["author"].fill_null("")
    if (authors != "").any():
        bags = authors.str.split(",").list.eval(pl.element().str.strip_chars())
        fields.append(categorical_field("author", bags, fit_mask, config.authors_top_k))
    for name in categorical_columns:
        bags = aligned[f"cat:{name}"].cast(pl.String).map_elements(lambda v: [v], return_dtype=pl.List(pl.String))
        fields.append(categorical_field(name, bags, fit_mask, config.categorical_top_k))

    text = None
    if (titles != "").any():
        offsets, values = hash_tokens(titles, config.text_buckets, config.max_title_tokens, config.title_bigrams)
        text = Ragged(offsets, values)
    cat_ids, cat_names = category_at_level(categories, config.category_level, config.category_path, fit_mask)
    features = SideFeatures(matrix, names, fields, text, config.text_buckets if text is not None else 0)
    return features, cat_ids, cat_names


def user_features(
    n_users: int, train_user: np.ndarray, train_item: np.ndarray, train_ts: np.ndarray, item_popularity: np.ndarray,
    aligned_users: pl.DataFrame | None, numeric_columns: list[str], categorical_columns: list[str], top_k: int,
) -> SideFeatures:
    """Aggregates of each reader's training history (never validation or test rows) plus reader metadata."""
    counts = np.bincount(train_user, minlength=n_users).astype(np.float64)
    first = np.full(n_users, np.inf)
    last = np.full(n_users, -np.inf)
    np.minimum.at(first, train_user, train_ts.astype(np.float64))
    np.maximum.at(last, train_user, train_ts.astype(np.float64))
    span_days = np.where(counts > 0, (last - first) / 86400.0, np.nan)
    pop_sum = np.bincount(train_user, weights=np.log1p(item_popularity[train_item]), minlength=n_users)
    mean_pop = np.where(counts > 0, pop_sum / np.maximum(counts, 1), np.nan)
    numeric = {"train_interactions": counts, "active_span_days": span_days, "mean_log_item_popularity": mean_pop}
    fit_mask = counts > 0
    fields = []
    if aligned_users is not None:
        for name in numeric_columns:
            numeric[name] = aligned_users[f"num:{name}"].cast(pl.Float64).to_numpy()
        for name in categorical_columns:
            bags = aligned_users[f"cat:{name}"].cast(pl.String).map_elements(lambda v: [v], return_dtype=pl.List(pl.String))
            fields.append(categorical_field(name, bags, fit_mask, top_k))
    matrix, names, _ = _numeric_block(numeric, {"train_interactions", "active_span_days"}, fit_mask)
    return SideFeatures(matrix, names, fields)
