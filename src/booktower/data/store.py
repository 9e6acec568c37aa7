"""Saving and loading prepared data: Parquet tables, NPZ arrays (allow_pickle=False) and JSON. Never pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from booktower.data.features import FeatureSpec
from booktower.data.types import CategoricalField, Interactions, PreparedData, Ragged, SideFeatures, Split
from booktower.data.vocab import Vocabulary
from booktower.utils.atomic import atomic_write_json, make_temp_dir


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
    """Write into a temporary sibling folder, then rename: a reader never sees half a cache entry."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(directory.parent, f".{directory.name}.")
    try:
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
        atomic_write_json(tmp / "summary.json", data.summary)
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_prepared(directory: Path) -> PreparedData:
    meta = json.loads((directory / "meta.json").read_text())
    with np.load(directory / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    parts = {name: Interactions(arrays[f"{name}_user"], arrays[f"{name}_item"], arrays[f"{name}_timestamp"])
             for name in ("train", "valid", "test")}
    return PreparedData(
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
    )
