"""prepare: validated sources -> pruned, split, indexed, featurised data (cached by input hash + data config)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower import __version__
from booktower.config.data import DataConfig
from booktower.data.errors import DataError, DropLedger
from booktower.data.featurize import (
    fit_feature_spec, item_category_ids, transform_items, transform_users, user_numeric_columns,
)
from booktower.data.ingest import PACKAGE_PREFIX, RawData, load_raw
from booktower.data.pruning import k_core
from booktower.data.splits import (
    TEST, TRAIN, VALID, assign_parts, held_out_ties, order_by_time, require_every_part, small_part_warnings,
)
from booktower.data.types import Interactions, PreparedData, Ragged, Split
from booktower.data.vocab import Vocabulary

log = logging.getLogger(__name__)

CACHE_FORMAT = 7  # 7: reads ordered to the nanosecond (`subsecond`), implausible times and placeholder ids dropped,
# values set to missing counted apart (`set_to_missing`); 6: the summary says where the dropped rows are
# (`dropped_where`); 5: a re-read keeps its earliest reading (by time), not its first row in the file
"""Bump when the prepared layout or the data layer's behaviour changes, so old cache entries are not reused."""


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


def _pruned_and_split(raw: RawData, config: DataConfig, ledger: DropLedger) -> tuple[pl.DataFrame, int]:
    """The interactions after k-core pruning, each reader's in time order, with their `part`; and the rounds."""
    frame, rounds = k_core(raw.interactions, config.min_user_interactions, config.min_item_interactions)
    pruned = raw.interactions.height - frame.height
    if pruned:
        ledger.drop("k_core_pruned", pruned, fix="lower data.min_user_interactions / data.min_item_interactions")
    if frame.height == 0:
        raise DataError(
            f"k-core pruning (users >= {config.min_user_interactions}, items >= {config.min_item_interactions}) "
            "removed every interaction", fix="lower data.min_user_interactions / data.min_item_interactions")
    frame = order_by_time(frame)
    frame = frame.with_columns(assign_parts(frame, config.split, config.columns.split))
    require_every_part(frame, config.split)
    return frame, rounds


def prepare_from_raw(raw: RawData, config: DataConfig, ledger: DropLedger) -> PreparedData:
    frame, rounds = _pruned_and_split(raw, config, ledger)
    users, items = build_vocabularies(frame, raw.catalogue)
    frame = frame.with_columns(user=users.encode(frame["user_id"]), item=items.encode(frame["item_id"]))
    frame = order_by_time(frame, user="user")
    split = Split(config.split.kind, _interactions(frame, TRAIN), _interactions(frame, VALID), _interactions(frame, TEST))

    has_catalogue, has_users = raw.catalogue is not None, raw.users is not None
    cols = config.columns
    catalogue_defaults = {"title": pl.String, "author": pl.String, "categories": pl.List(pl.String)}
    aligned_items = _align(raw.catalogue, "item_id", items, catalogue_defaults).with_columns(
        pl.col("title").fill_null(""), pl.col("author").fill_null(""), pl.col("categories").fill_null([])
    )
    aligned_users = _align(raw.users, "user_id", users, {}) if has_users else None
    popularity = np.bincount(split.train.item, minlength=len(items)).astype(np.float64)
    train_hist = _ragged_by_user(split.train, len(users))
    user_numeric = cols.user_numeric if has_users else []
    user_columns = user_numeric_columns(len(users), train_hist, split.train.timestamp, popularity, aligned_users, user_numeric)
    fit_warnings: list[str] = []
    spec = fit_feature_spec(
        aligned_items, popularity, user_columns, aligned_users, np.diff(train_hist.offsets) > 0, config.features,
        cols.item_numeric if has_catalogue else [], cols.item_count_columns if has_catalogue else [],
        cols.item_categorical if has_catalogue else [], cols.user_categorical if has_users else [],
        warnings=fit_warnings,
    )
    item_feats = transform_items(spec, aligned_items, popularity)
    user_feats = transform_users(spec, user_columns, aligned_users, len(users))
    item_cat, cat_names = item_category_ids(spec, aligned_items["categories"]), spec.category_names
    metadata = aligned_items.select(
        "item_id", "title", "author", pl.col("categories").list.join(" > ").alias("categories")
    )
    source = str(raw.input_paths[0]) if raw.input_paths else "the interaction log"
    summary = {
        "n_interactions": frame.height,
        "n_users": len(users),
        "n_items": len(items),
        **split.sizes(),
        "n_after_validation": int(raw.interactions.height),
        "k_core_rounds": rounds,
        "split": config.split.kind,
        "dropped": ledger.as_dict(),
        "dropped_where": dict(sorted(ledger.notes.items())),  # the first rows of each reason, as the file shows them
        "set_to_missing": raw.set_to_missing.as_dict(),  # values, not rows: the book or reader stays
        "set_to_missing_where": dict(sorted(raw.set_to_missing.notes.items())),
        "feature_dims": {"user": user_feats.dims(), "item": item_feats.dims(), "n_categories": len(cat_names)},
        "catalogue_items": int(raw.catalogue.height) if raw.catalogue is not None else None,
        **_tie_report(frame, split, config, source),
    }
    small = small_part_warnings(frame, config.split, source)
    for message in small:
        log.warning(message)
    if small or fit_warnings:  # fit_feature_spec logged its own
        summary["warnings"] = [*summary.get("warnings", []), *fit_warnings, *small]
    return PreparedData(users, items, split, user_feats, item_feats, item_cat, cat_names, metadata, summary, spec)


def _tie_report(frame: pl.DataFrame, split: Split, config: DataConfig, source: str) -> dict[str, Any]:
    """How many held-out interactions tie in time with the reader's previous one. Without a `data.columns.order`
    column, file order decides which of them is held out: a warning says so. Only a per-reader split (leave
    last out) picks by position; a time cut-off or a label column decides by time or label, so ties change
    nothing there and are not reported."""
    if config.split.kind != "leave_last_out":
        return {}
    ties = held_out_ties(frame)
    report: dict[str, Any] = {"held_out_timestamp_ties": ties}
    if not ties:
        return report
    message = (f"{source}: {ties:,} of {len(split.valid) + len(split.test):,} held-out interactions have the same "
               "timestamp as the reader's previous one, to the precision the log gives")
    if config.columns.order:
        log.info("%s: %r orders them", message, config.columns.order)
    else:
        report["warnings"] = [f"{message}: which of them is held out follows file order, not time (set "
                              "data.columns.order to a within-reader sequence column, if the data has one)"]
        log.warning(report["warnings"][0])
    return report


def _ragged_by_user(part: Interactions, n_users: int) -> Ragged:
    """`part` is sorted by (user, time, order), so each user's items are one contiguous, time-ordered run."""
    return Ragged.by_row(part.user, part.item, n_users)


SOURCE_PATHS = ("interactions", "items", "users", "fallback_interactions", "fallback_items")


def cache_key(config: DataConfig, fingerprint: str) -> str:
    """The prepared data's key: the data config with its file paths as the files they name (`data/users.csv`
    from one folder and its absolute path from another share an entry), and the inputs' fingerprint."""
    source = config.source.model_copy(update={
        name: path.resolve() for name in SOURCE_PATHS
        if (path := getattr(config.source, name)) is not None and not str(path).startswith(PACKAGE_PREFIX)})
    config = config.model_copy(update={"source": source})
    payload = json.dumps({"data": config.model_dump(mode="json", exclude={"cache_dir", "strict"}), "inputs": fingerprint,
                          "format": CACHE_FORMAT,
                          "booktower": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def prepare(config: DataConfig) -> tuple[PreparedData, list[Path]]:
    """Load (or reuse from cache) the prepared data. Returns it and the input files it came from."""
    from booktower.data.ingest import resolve_source
    from booktower.data.store import load_cached, save_prepared
    from booktower.utils.runinfo import file_fingerprint

    start = time.perf_counter()
    interactions_path, items_path, _ = resolve_source(config.source)  # its warnings come again from load_raw
    inputs = [p for p in (interactions_path, items_path, config.source.users) if p is not None and p.exists()]
    cache_dir = None
    if config.cache_dir is not None and inputs:
        key = cache_key(config, file_fingerprint([path.resolve() for path in inputs])["sha256"])
        cache_dir = config.cache_dir / key
        # An entry that cannot be read is a miss (a warning says why): prepared again below, and replaced.
        data = load_cached(cache_dir) if (cache_dir / "summary.json").exists() else None
        if data is not None:
            # `strict` is not in the key (it changes no array), but an entry a lenient run wrote after dropping
            # rows or blanking values must not let a strict run pass: it reads the files again, and stops there.
            if not (config.strict and (data.summary.get("dropped") or data.summary.get("set_to_missing"))):
                data.summary["cache"] = {"hit": True, "path": str(cache_dir)}
                data.summary["seconds"] = round(time.perf_counter() - start, 3)
                log.info("reusing prepared data from cache %s", cache_dir)
                return data, inputs
    ledger = DropLedger(strict=config.strict)
    raw, read_warnings = load_raw(config, ledger)  # resolve_source's again, and those of the rows read
    data = prepare_from_raw(raw, config, ledger)
    data.summary["warnings"] = read_warnings + data.summary.get("warnings", [])
    data.summary["inputs"] = [str(p) for p in raw.input_paths]
    if cache_dir is not None:
        data.summary["cache"] = {"hit": False, "path": str(cache_dir)}
        try:
            save_prepared(data, cache_dir)
        except OSError as exc:  # a full or read-only disk costs the next run a prepare, not this run
            data.summary["cache"]["error"] = f"{exc.strerror or exc}"
            log.warning("the prepared data could not be cached in %s (%s): this run goes on without it, and the "
                        "next one prepares again (free space there, or set data.cache_dir to another folder)",
                        cache_dir, exc.strerror or exc)
    data.summary["seconds"] = round(time.perf_counter() - start, 3)
    return data, inputs
