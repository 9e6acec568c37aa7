"""Which split a set of metrics was computed on, so metrics from different data are never set side by side.

A run and its baselines are produced by separate commands; after a change to the data or its pruning the
baselines folder may hold numbers for other readers and other held-out books. `split.json` beside each set of
metrics records a hash of the split itself (vocabularies and interactions), which the report compares.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from booktower.data.types import PreparedData
from booktower.utils.atomic import atomic_write_json
from booktower.utils.run_files import baselines_fix, read_json_object, retrain_fix

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
    """DIR/split.json, or None when DIR has none; a damaged one raises a DataError naming it and the fix for a
    run folder (training wrote it) or a baselines folder (`booktower baselines` did)."""
    directory = Path(directory)
    if not (directory / SPLIT_FILE).is_file():
        return None
    is_run = (directory / "config.yaml").is_file()
    fix = retrain_fix(directory) if is_run else baselines_fix(directory, _run_config(directory))
    return read_json_object(directory / SPLIT_FILE, fix)


def _run_config(folder: Path) -> Path | str:
    """The config a baselines folder inside a run (RUN/baselines) is computed from: the run's."""
    config = folder.parent / "config.yaml"
    return config if folder.name == "baselines" and config.is_file() else "CFG"


def split_mismatch(first: dict[str, Any] | None, second: dict[str, Any] | None) -> str | None:
    """Why two splits differ, in words ("n_users FIRST vs SECOND, ..."), in the order the caller's message names
    them; None when they are the same or either is unrecorded."""
    if first is None or second is None or first.get("sha256") == second.get("sha256"):
        return None
    keys = ("n_users", "n_items", "n_train", "n_valid", "n_test")
    counts = [f"{key} {first.get(key)} vs {second.get(key)}" for key in keys if first.get(key) != second.get(key)]
    return ", ".join(counts) if counts else "same sizes, different readers, books or interactions"
