"""Whether `evaluate` would score a run on the data it was trained and selected on.

`evaluate` prepares the data again from RUN/config.yaml. Input files changed since training (the same ids, but
other timestamps, say) give another split, and the rewritten metrics would describe other held-out books than
the ones the run was selected on, silently. Training records what it read: each input's sha256 in run.json and
the split's hash in split.json; both are compared here. An evaluation the user lets through anyway
(`--allow-changed-data`) says so in metrics.json under `data_changed`, which also keeps the split the run was
trained on: split.json must describe the split the metrics beside it were scored on, for `compare` and the
report, so it is rewritten. Data whose readers or books are numbered differently (new ids, or timestamps that
reorder first appearances) cannot be scored even then: `load_run` refuses it, since the model's rows follow the
run's numbering.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from booktower.data.errors import DataError
from booktower.data.types import PreparedData
from booktower.evaluation.split_identity import read_split_identity, split_identity, split_mismatch
from booktower.utils.run_files import RUN_JSON_SHAPE, damaged, read_json_object, rescore_fix, retrain_fix
from booktower.utils.runinfo import file_fingerprint, working_directory

DATA_CHANGED = "data_changed"
"""The metrics.json key an evaluation on changed data writes (and an evaluation on the trained data removes)."""
ALLOW_FLAG = "--allow-changed-data"


def _recorded_inputs(run_dir: Path) -> dict[str, Any]:
    """run.json's `inputs.files` ({name: {"sha256": ...}}); empty for a run that recorded none. A damaged
    run.json is refused (DataError): the check it records would be skipped silently."""
    path, fix = run_dir / "run.json", retrain_fix(run_dir)
    files = (read_json_object(path, fix, RUN_JSON_SHAPE) or {}).get("inputs", {}).get("files", {})
    if not isinstance(files, dict):
        raise damaged(path, fix, "its inputs.files is not an object of the input files' sha256s")
    return files


def changed_inputs(run_dir: Path) -> list[str]:
    """The input files run.json recorded whose bytes differ now, or that are gone. A path recorded relative is
    read from the folder the run was trained from, as `load_run` reads RUN/config.yaml's."""
    files = _recorded_inputs(Path(run_dir))
    base = working_directory(Path(run_dir))
    changes = []
    for name, entry in files.items():
        path = base / name  # an absolute name stays itself
        if not path.exists():
            changes.append(f"input {name} is gone")
            continue
        now = file_fingerprint([path])["files"][str(path)]["sha256"]
        then = entry.get("sha256") if isinstance(entry, dict) else None
        if now != then:
            changes.append(f"input {name} changed (sha256 {str(then)[:12]} at training, {now[:12]} now)")
    return changes


def trained_split(run_dir: Path) -> dict[str, Any] | None:
    """The split the run was trained and selected on: split.json, or the copy metrics.json keeps once an
    evaluation on changed data has rewritten split.json."""
    run_dir = Path(run_dir)
    metrics = read_json_object(run_dir / "metrics.json", rescore_fix(run_dir, move_aside=True)) or {}
    kept = metrics.get(DATA_CHANGED)
    if isinstance(kept, dict) and isinstance(kept.get("trained_split"), dict):
        return kept["trained_split"]
    return read_split_identity(run_dir)


def split_change(run_dir: Path, data: PreparedData) -> list[str]:
    """The split `data` gives against the one the run was trained on, in words (empty when they are equal or
    the run recorded none)."""
    mismatch = split_mismatch(split_identity(data), trained_split(run_dir))
    return [f"the split differs from the one in split.json (now vs at training: {mismatch})"] if mismatch else []


def refuse_changed_data(run_dir: Path, changes: list[str]) -> DataError:
    return DataError(
        f"the data `evaluate` would score is not the data this run was trained and selected on: "
        f"{'; '.join(changes)}. "
        + ("Its metrics would describe other held-out books" if any(c.startswith("the split") for c in changes)
           else "Its metrics could differ from the run's for that reason alone"),
        path=Path(run_dir) / ("run.json" if any(c.startswith("input ") for c in changes) else "split.json"),
        fix=f"train a new run on the current files (booktower train), or point the run at the files it was "
            f"trained on; to score it on these anyway pass {ALLOW_FLAG} (metrics.json then records the change "
            f"under `{DATA_CHANGED}`)")


def data_changed_note(run_dir: Path, data: PreparedData, changes: list[str]) -> dict[str, Any]:
    """What metrics.json records about an evaluation let through on changed data."""
    return {"allowed_by": ALLOW_FLAG, "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes,
            "trained_split": trained_split(run_dir), "scored_split": split_identity(data)}
