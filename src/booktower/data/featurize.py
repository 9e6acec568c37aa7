"""Fitting the feature spec on training rows and turning items and readers into SideFeatures."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from booktower.config.data import FeatureConfig
from booktower.data.features import (
    ITEM_DERIVED, USER_DERIVED, CategoricalSpec, FeatureSpec, SideSpec, bags_for, category_ids, category_labels,
    encode_bags, fit_levels, fit_numeric, numeric_names, transform_numeric,
)
from booktower.data.textparse import AuthorSplit, fit_author_split, hash_tokens, single_word_authors
from booktower.data.types import CategoricalField, Ragged, SideFeatures

log = logging.getLogger(__name__)


def item_numeric_columns(aligned: pl.DataFrame, numeric: list[str], popularity: np.ndarray) -> dict[str, np.ndarray]:
    titles = aligned["title"].fill_null("")
    columns = {name: aligned[f"num:{name}"].cast(pl.Float64).to_numpy() for name in numeric if f"num:{name}" in aligned.columns}
    columns["title_words"] = titles.str.count_matches(r"[^\W_]+").cast(pl.Float64).to_numpy()
    columns["title_chars"] = titles.str.len_chars().cast(pl.Float64).to_numpy()
    columns["train_popularity"] = popularity.astype(np.float64)
    return columns


def user_numeric_columns(
    n_users: int, histories: Ragged, timestamps: np.ndarray | None, item_popularity: np.ndarray,
    aligned_users: pl.DataFrame | None, numeric: list[str],
) -> dict[str, np.ndarray]:
    """Aggregates of each reader's (training) history; `timestamps` align with `histories.values`.
    `item_popularity` is NaN for a book without a training count (added to a served bundle after training): its
    popularity is unknown, not 0, so the mean popularity is over the other books (counting it as 0 made a
    reader of a few new books look like a reader of obscure ones, and the recommendations followed)."""
    counts = np.diff(histories.offsets).astype(np.float64)
    owner = np.repeat(np.arange(n_users), np.diff(histories.offsets))
    span = np.full(n_users, np.nan)
    if timestamps is not None and len(timestamps):
        first = np.full(n_users, np.inf)
        last = np.full(n_users, -np.inf)
        np.minimum.at(first, owner, timestamps.astype(np.float64))
        np.maximum.at(last, owner, timestamps.astype(np.float64))
        span = np.where(counts > 0, (last - first) / 86400.0, np.nan)
    log_popularity = np.log1p(item_popularity[histories.values])
    known = np.isfinite(log_popularity)
    pop = np.bincount(owner[known], weights=log_popularity[known], minlength=n_users)
    with_popularity = np.bincount(owner[known], minlength=n_users)
    columns = {
        "train_interactions": counts,
        "active_span_days": span,
        "mean_log_item_popularity": np.where(with_popularity > 0, pop / np.maximum(with_popularity, 1), np.nan),
    }
    if aligned_users is not None:
        for name in numeric:
            columns[name] = aligned_users[f"num:{name}"].cast(pl.Float64).to_numpy()
    return columns


def fit_feature_spec(
    aligned_items: pl.DataFrame, item_popularity: np.ndarray, user_columns: dict[str, np.ndarray],
    aligned_users: pl.DataFrame | None, user_fit: np.ndarray, config: FeatureConfig,
    item_numeric: list[str], item_counts: list[str], item_categorical: list[str], user_categorical: list[str],
    warnings: list[str] | None = None,
) -> FeatureSpec:
    """All statistics and levels come from rows with training interactions (`popularity > 0`, `user_fit`).
    What fitting had to warn about is logged, and appended to `warnings` when given."""
    item_fit = item_popularity > 0
    columns = item_numeric_columns(aligned_items, item_numeric, item_popularity)
    logs = set(item_counts) | set(ITEM_DERIVED)
    item_side = SideSpec([fit_numeric(n, v, item_fit, n in logs) for n, v in columns.items()])
    authors = fit_author_split(aligned_items["author"].filter(pl.Series(item_fit)), config.author_separator)
    _fit_item_categoricals(item_side, aligned_items, item_fit, config, item_categorical, authors, warnings)
    if (aligned_items["title"].fill_null("") != "").any():
        item_side.text_buckets, item_side.max_title_tokens = config.text_buckets, config.max_title_tokens
        item_side.title_bigrams = config.title_bigrams

    user_logs = {"train_interactions", "active_span_days"}
    user_side = SideSpec([fit_numeric(n, v, user_fit, n in user_logs) for n, v in user_columns.items()])
    for name in user_categorical:
        assert aligned_users is not None
        source = f"column:cat:{name}"
        bags = bags_for(source, aligned_users, False, authors)
        levels = fit_levels(bags, user_fit, config.categorical_top_k)
        user_side.categorical.append(CategoricalSpec(name, source, levels))
    labels = category_labels(aligned_items["categories"], config.category_level, config.category_path)
    names = sorted(set(labels.filter(pl.Series(item_fit)).drop_nulls().to_list()))
    return FeatureSpec(item_side, user_side, config.category_level, config.category_path, names, authors)


def _fit_item_categoricals(
    side: SideSpec, aligned_items: pl.DataFrame, item_fit: np.ndarray, config: FeatureConfig,
    item_categorical: list[str], authors: AuthorSplit, warnings: list[str] | None,
) -> None:
    """The category, author and other categorical fields' levels, into `side`."""
    sources = []
    if aligned_items["categories"].list.len().sum():
        kind = "category_path" if config.category_path else "category_tags"
        sources.append(("category", kind, config.categories_top_k))
    if (aligned_items["author"].fill_null("") != "").any():
        sources.append(("author", "author", config.authors_top_k))
    sources += [(name, f"column:cat:{name}", config.categorical_top_k) for name in item_categorical]
    for name, source, top_k in sources:
        bags = bags_for(source, aligned_items, config.category_path, authors)
        side.categorical.append(CategoricalSpec(name, source, fit_levels(bags, item_fit, top_k)))
        message = single_word_authors(bags.filter(pl.Series(item_fit)), authors) if source == "author" else None
        if message:
            log.warning(message)
            if warnings is not None:
                warnings.append(message)


def _categorical(side: SideSpec, table: pl.DataFrame, category_path: bool, authors: AuthorSplit
                 ) -> list[CategoricalField]:
    return [CategoricalField(c.name, encode_bags(bags_for(c.source, table, category_path, authors), c.levels),
                             c.levels) for c in side.categorical]


def transform_items(spec: FeatureSpec, catalogue: pl.DataFrame, popularity: np.ndarray | None = None) -> SideFeatures:
    """Standard catalogue rows (item_id, title, author, categories, num:*, cat:*) -> item features.

    New books pass `popularity=None`: they have no training interactions (count 0).
    """
    table = catalogue.with_columns(
        pl.col("title").fill_null("") if "title" in catalogue.columns else pl.lit("").alias("title"),
        pl.col("author").fill_null("") if "author" in catalogue.columns else pl.lit("").alias("author"),
        pl.col("categories").fill_null([]) if "categories" in catalogue.columns
        else pl.lit([], dtype=pl.List(pl.String)).alias("categories"),
    )
    popularity = np.zeros(table.height) if popularity is None else popularity
    names = [n.name for n in spec.item.numeric if n.name not in ITEM_DERIVED]
    numeric = transform_numeric(spec.item.numeric, item_numeric_columns(table, names, popularity), table.height)
    text = None
    if spec.item.text_buckets:
        text = Ragged(*hash_tokens(table["title"], spec.item.text_buckets, spec.item.max_title_tokens, spec.item.title_bigrams))
    fields = _categorical(spec.item, table, spec.category_path, spec.author_split)
    return SideFeatures(numeric, numeric_names(spec.item.numeric), fields, text, spec.item.text_buckets)


def transform_users(spec: FeatureSpec, columns: dict[str, np.ndarray], table: pl.DataFrame | None, n_users: int) -> SideFeatures:
    numeric = transform_numeric(spec.user.numeric, columns, n_users)
    if table is not None and spec.user.categorical:
        fields = _categorical(spec.user, table, False, spec.author_split)
    else:
        fields = [CategoricalField(c.name, Ragged(np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)),
                                   c.levels) for c in spec.user.categorical]
    return SideFeatures(numeric, numeric_names(spec.user.numeric), fields)


def user_features_from_history(
    spec: FeatureSpec, histories: Ragged, item_popularity: np.ndarray, timestamps: np.ndarray | None = None,
    user_rows: pl.DataFrame | None = None,
) -> SideFeatures:
    """Features of (possibly anonymous) readers from their histories, exactly as fitted in training.

    `user_rows` (optional) holds num:<col> / cat:<col> reader metadata aligned with the histories.
    """
    n = histories.n_rows
    names = [s.name for s in spec.user.numeric if s.name not in USER_DERIVED]
    columns = user_numeric_columns(n, histories, timestamps, item_popularity, user_rows if names else None, names)
    return transform_users(spec, columns, user_rows, n)


def item_category_ids(spec: FeatureSpec, categories: pl.Series) -> np.ndarray:
    return category_ids(category_labels(categories, spec.category_level, spec.category_path), spec.category_names)
