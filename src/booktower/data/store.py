"""Saving and loading prepared data: Parquet tables, NPZ arrays (allow_pickle=False) and JSON. Never pickle."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from booktower.data.features import FeatureSpec
from booktower.data.types import CategoricalField, Interactions, PreparedData, Ragged, SideFeatures, Split
from booktower.data.vocab import Vocabulary
from booktower.utils.atomic import atomic_write_json, fsync_files, make_temp_dir, named_as, writing

log = logging.getLogger(__name__)

# What reading a damaged entry raises: a truncated or foreign NPZ (BadZipFile, EOFError, zlib.error;
# ValueError for an object array, which is never unpickled), invalid JSON (ValueError), a truncated Parquet
# file (PolarsError), a missing file (OSError), a missing key or a field of the wrong type (KeyError,
# TypeError), files of two entries mixed (ValueError, from `_check_consistent`).
_DAMAGE = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, zlib.error,
           pl.exceptions.PolarsError)


def _side_arrays(prefix: str, side: SideFeatures) -> tuple[dict[str, np.ndarray], dict]:
    arrays = {f"{prefix}numeric": side.numeric}
    meta = {"numeric_names": side.numeric_names, "text_buckets": side.text_buckets, "categorical": []}
    for field in side.categorical:
        arrays[f"{prefix}cat_{field.name}_offsets"] = field.bags.offsets
        arrays[f"{prefix}cat_{field.name}_values"] = field.bags.values
        meta["categorical"].append({"name": field.name, "levels": field.levels})
    if side.text is not None:
        arrays[f"{prefix}text_offsets"] = side.text.offsets
        arrays[f"{prefix}text_values"] = side.text.values
    return arrays, meta


def _side_from(prefix: str, arrays: dict[str, np.ndarray], meta: dict) -> SideFeatures:
    fields = [
        CategoricalField(f["name"], Ragged(arrays[f"{prefix}cat_{f['name']}_offsets"], arrays[f"{prefix}cat_{f['name']}_values"]),
                         list(f["levels"]))
        for f in meta["categorical"]
    ]
    text = None
    if f"{prefix}text_offsets" in arrays:
        text = Ragged(arrays[f"{prefix}text_offsets"], arrays[f"{prefix}text_values"])
    return SideFeatures(arrays[f"{prefix}numeric"], list(meta["numeric_names"]), fields, text, int(meta["text_buckets"]))


def save_prepared(data: PreparedData, directory: Path) -> None:
    """Write into a temporary sibling folder, flush it, then swap it in (`_swap_in`): a reader finds the old
    entry whole, the new one whole, or none. A disk that refuses the write raises an OSError naming the
    entry."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(directory.parent, f".{directory.name}.")
    try:
        with named_as(tmp, directory), writing(directory):
            _write_entry(data, tmp)
            fsync_files(tmp)
        _swap_in(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _swap_in(tmp: Path, directory: Path) -> None:
    """Rename `tmp` to `directory`, replacing an older entry by moving it aside first (a rename replaces only
    an empty folder), so `directory` is never a half-deleted entry. When another process put its entry there in
    the meantime, that one stays: both were prepared from the same inputs and config (the key says so)."""
    # a name no folder has yet (renaming onto an existing empty folder works on POSIX only)
    old = directory.parent / f".{directory.name}.old.{os.getpid()}.{time.time_ns()}"
    try:
        try:
            directory.rename(old)
        except FileNotFoundError:
            pass  # no older entry, or another run moved it aside a moment ago
        try:
            tmp.rename(directory)
        except OSError:
            if not (directory / "summary.json").exists():
                raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _write_entry(data: PreparedData, tmp: Path) -> None:
    data.users.save(tmp / "users.parquet")
    data.items.save(tmp / "items.parquet")
    arrays: dict[str, np.ndarray] = {"item_category": data.item_category}
    for name, part in (("train", data.split.train), ("valid", data.split.valid), ("test", data.split.test)):
        arrays[f"{name}_user"], arrays[f"{name}_item"], arrays[f"{name}_timestamp"] = part.user, part.item, part.timestamp
    user_arrays, user_meta = _side_arrays("user_", data.user_features)
    item_arrays, item_meta = _side_arrays("item_", data.item_features)
    np.savez(tmp / "arrays.npz", **arrays, **user_arrays, **item_arrays)
    data.item_metadata.write_parquet(tmp / "item_metadata.parquet")
    (tmp / "meta.json").write_text(json.dumps({
        "split_kind": data.split.kind, "category_names": data.category_names,
        "user_features": user_meta, "item_features": item_meta,
        "feature_spec": data.feature_spec.to_json() if data.feature_spec is not None else None,
    }))
    atomic_write_json(tmp / "summary.json", data.summary)  # last: its presence marks a whole entry


def load_cached(directory: Path) -> PreparedData | None:
    """The prepared data in cache entry `directory`, or None (a miss) when it cannot be read: a disk fault, a
    partial copy or an edit can damage any of its files, and preparing again is always possible. A warning
    names the entry and what is wrong with it."""
    try:
        return load_prepared(directory)
    except _DAMAGE as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning("the prepared-data cache entry %s cannot be read (%s: %s): preparing the data again, "
                    "which replaces it", directory, type(exc).__name__, detail[:300])
        return None


def _check_consistent(data: PreparedData) -> PreparedData:
    """Files of one entry agree on the numbers of users and books (files mixed from two entries do not)."""
    counts = {"users.parquet": (data.n_users, data.user_features.n_rows),
              "items.parquet": (data.n_items, data.item_features.n_rows),
              "item_metadata.parquet": (data.n_items, data.item_metadata.height)}
    for name, (want, got) in counts.items():
        if want != got:
            raise ValueError(f"{name} has {want:,} rows where arrays.npz has {got:,}")
    for name in ("train", "valid", "test"):
        part = getattr(data.split, name)
        if len(part) and (part.user.max() >= data.n_users or part.item.max() >= data.n_items
                          or min(part.user.min(), part.item.min()) < 0):
            raise ValueError(f"the {name} interactions in arrays.npz name users or books outside the "
                             "vocabularies")
    return data


def load_prepared(directory: Path) -> PreparedData:
    """Raises whatever reading a damaged entry raises (see `_DAMAGE`); `load_cached` makes that a miss."""
    meta = json.loads((directory / "meta.json").read_text())
    with np.load(directory / "arrays.npz", allow_pickle=False) as npz:  # never unpickle
        arrays = {k: npz[k] for k in npz.files}
    parts = {name: Interactions(arrays[f"{name}_user"], arrays[f"{name}_item"], arrays[f"{name}_timestamp"])
             for name in ("train", "valid", "test")}
    return _check_consistent(PreparedData(
        users=Vocabulary.load(directory / "users.parquet"),
        items=Vocabulary.load(directory / "items.parquet"),
        split=Split(meta["split_kind"], parts["train"], parts["valid"], parts["test"]),
        user_features=_side_from("user_", arrays, meta["user_features"]),
        item_features=_side_from("item_", arrays, meta["item_features"]),
        item_category=arrays["item_category"],
        category_names=list(meta["category_names"]),
        item_metadata=pl.read_parquet(directory / "item_metadata.parquet"),
        summary=json.loads((directory / "summary.json").read_text()),
        feature_spec=FeatureSpec.from_json(meta["feature_spec"]) if meta.get("feature_spec") else None,
    ))
