"""Which split a set of metrics was computed on, so metrics from different data are never set side by side.

A run and its baselines are produced by separate commands; after a change to the data or its pruning the
baselines folder may hold numbers for other readers and other held-out books. `split.json` beside each set of
metrics records a hash of the split itself (vocabularies and interactions), which the report compares.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from booktower.data.types import PreparedData
from booktower.utils.atomic import atomic_write_json

SPLIT_FILE = "split.json"


def split_identity(data: PreparedData) -> dict[str, Any]:
    """Counts and a sha256 over the raw ids and every (user, item, time) of the three parts."""
    digest = hashlib.sha256()
    for vocabulary in (data.users, data.items):
        digest.update("\n".join(vocabulary.ids.to_list()).encode("utf-8"))
        digest.update(b"\0")
    for part in (data.split.train, data.split.valid, data.split.test):
        for column in (part.user, part.item, part.timestamp):
            digest.update(np.ascontiguousarray(column, dtype=np.int64).tobytes())
        digest.update(b"\0")
    return {"sha256": digest.hexdigest(), "n_users": data.n_users, "n_items": data.n_items, **data.split.sizes()}


def write_split_identity(directory: Path, identity: dict[str, Any]) -> None:
    atomic_write_json(Path(directory) / SPLIT_FILE, identity)


def read_split_identity(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / SPLIT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def split_mismatch(first: dict[str, Any] | None, second: dict[str, Any] | None) -> str | None:
    """Why two splits differ, in words ("n_users FIRST vs SECOND, ..."), in the order the caller's message names
    them; None when they are the same or either is unrecorded."""
    if first is None or second is None or first.get("sha256") == second.get("sha256"):
        return None
    keys = ("n_users", "n_items", "n_train", "n_valid", "n_test")
    counts = [f"{key} {first.get(key)} vs {second.get(key)}" for key in keys if first.get(key) != second.get(key)]
    return ", ".join(counts) if counts else "same sizes, different readers, books or interactions"
