"""prepare: validated sources -> pruned, split, indexed, featurised data (cached by input hash + data config)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.features import item_features, user_features
from booktower.data.ingest import RawData, load_raw
from booktower.data.pruning import k_core
from booktower.data.splits import TEST, TRAIN, VALID, assign_parts, order_by_time
from booktower.data.types import Interactions, PreparedData, Split
from booktower.data.vocab import Vocabulary

log = logging.getLogger(__name__)


def build_vocabularies(frame: pl.DataFrame, catalogue: pl.DataFrame | None) -> tuple[Vocabulary, Vocabulary]:
    """Indices 0..k-1 are ids seen in training (first appearance); ids only seen outside training follow.

    Users or books that appear only in validation/test (time-cutoff splits, new catalogue books) still get an
    index so they can be ranked and served through their content features; their ID rows are never trained.
    """
    train = frame.filter(pl.col("part") == TRAIN)
    users = pl.concat([train["user_id"], frame["user_id"]]).unique(maintain_order=True)
    items = pl.concat([train["item_id"], frame["item_id"]]).unique(maintain_order=True)
    return Vocabulary(users, name="user_id"), Vocabulary(items, name="item_id")


def _interactions(frame: pl.DataFrame, part: int) -> Interactions:
    chunk = frame.filter(pl.col("part") == part)
    return Interactions(
        chunk["user"].to_numpy().astype(np.int64),
        chunk["item"].to_numpy().astype(np.int64),
        chunk["timestamp"].to_numpy().astype(np.int64),
    )


def _align(table: pl.DataFrame | None, key: str, vocab: Vocabulary, defaults: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows of `table` in vocabulary order (missing rows become nulls)."""
    ids = pl.DataFrame({key: vocab.ids})
    if table is None:
        return ids.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in defaults.items()])
    return ids.join(table, on=key, how="left", maintain_order="left")


def prepare_from_raw(raw: RawData, config: DataConfig, ledger: DropLedger) -> PreparedData:
    frame = raw.interactions
    n_before = frame.height
    frame, rounds = k_core(frame, config.min_user_interactions, config.min_item_interactions)
    pruned = n_before - frame.height
    if pruned:
        ledger.drop("k_core_pruned", pruned, fix="lower data.min_user_interactions / data.min_item_interactions")
    if frame.height == 0:
        raise DataError(
            f"k-core pruning (users >= {config.min_user_interactions}, items >= {config.min_item_interactions}) "
            "removed every interaction", fix="lower data.min_user_interactions / data.min_item_interactions")
    frame = order_by_time(frame)
    frame = frame.with_columns(assign_parts(frame, config.split))
    users, items = build_vocabularies(frame, raw.catalogue)
    frame = frame.with_columns(user=users.encode(frame["user_id"]), item=items.encode(frame["item_id"]))
    split = Split(config.split.kind, _interactions(frame, TRAIN), _interactions(frame, VALID), _interactions(frame, TEST))
    if len(split.train) == 0:
        raise DataError("the split left no training interactions", fix="check data.split")

    train_counts = np.bincount(split.train.item, minlength=len(items))
    catalogue_defaults = {"title": pl.String, "author": pl.String, "categories": pl.List(pl.String)}
    aligned_items = _align(raw.catalogue, "item_id", items, catalogue_defaults).with_columns(
        pl.col("title").fill_null(""), pl.col("author").fill_null(""), pl.col("categories").fill_null([])
    )
    cols = config.columns
    item_feats, item_cat, cat_names = item_features(
        aligned_items, train_counts, config.features,
        cols.item_numeric if raw.catalogue is not None else [],
        cols.item_count_columns if raw.catalogue is not None else [],
        cols.item_categorical if raw.catalogue is not None else [],
    )
    aligned_users = _align(raw.users, "user_id", users, {}) if raw.users is not None else None
    user_feats = user_features(
        len(users), split.train.user, split.train.item, split.train.timestamp, train_counts.astype(np.float64),
        aligned_users, cols.user_numeric if raw.users is not None else [],
        cols.user_categorical if raw.users is not None else [], config.features.categorical_top_k,
    )
    metadata = aligned_items.select(
        "item_id", "title", "author", pl.col("categories").list.join(" > ").alias("categories")
    )
    summary = {
        "n_interactions": frame.height,
        "n_users": len(users),
        "n_items": len(items),
        **split.sizes(),
        "n_raw_interactions": int(raw.interactions.height + sum(v for k, v in ledger.counts.items()
                                                                 if not k.startswith(("catalogue", "negative", "users")) and k != "k_core_pruned")),
        "k_core_rounds": rounds,
        "split": config.split.kind,
        "dropped": ledger.as_dict(),
        "feature_dims": {"user": user_feats.dims(), "item": item_feats.dims(), "n_categories": len(cat_names)},
        "catalogue_items": int(raw.catalogue.height) if raw.catalogue is not None else None,
    }
    return PreparedData(users, items, split, user_feats, item_feats, item_cat, cat_names, metadata, summary)


def cache_key(config: DataConfig, fingerprint: str) -> str:
    payload = json.dumps({"data": config.model_dump(mode="json", exclude={"cache_dir", "strict"}), "inputs": fingerprint,
                          "format": 1}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def prepare(config: DataConfig) -> tuple[PreparedData, list[Path]]:
    """Load (or reuse from cache) the prepared data. Returns it and the input files it came from."""
    from booktower.data.ingest import resolve_source
    from booktower.data.store import load_prepared, save_prepared
    from booktower.utils.runinfo import file_fingerprint

    start = time.perf_counter()
    interactions_path, items_path, warnings = resolve_source(config.source)
    inputs = [p for p in (interactions_path, items_path, config.source.users) if p is not None and p.exists()]
    cache_dir = None
    if config.cache_dir is not None and inputs:
        key = cache_key(config, file_fingerprint(inputs)["sha256"])
        cache_dir = config.cache_dir / key
        if (cache_dir / "summary.json").exists():
            data = load_prepared(cache_dir)
            data.summary["cache"] = {"hit": True, "path": str(cache_dir)}
            data.summary["seconds"] = round(time.perf_counter() - start, 3)
            log.info("reusing prepared data from cache %s", cache_dir)
            return data, inputs
    ledger = DropLedger(strict=config.strict)
    raw, _ = load_raw(config, ledger)
    data = prepare_from_raw(raw, config, ledger)
    data.summary["warnings"] = warnings
    data.summary["inputs"] = [str(p) for p in raw.input_paths]
    if cache_dir is not None:
        save_prepared(data, cache_dir)
        data.summary["cache"] = {"hit": False, "path": str(cache_dir)}
    data.summary["seconds"] = round(time.perf_counter() - start, 3)
    return data, inputs
