"""RUN/test_scorings.json: every scoring of a run folder's test split, with the command and the model that scored.

The test split is meant to be scored once. Re-scoring the same model is harmless (it gives the same numbers) but
a folder whose test split was scored by several models (configs trained one after another into it, each scored)
has numbers that a choice among them has selected on test. This file is what shows it: one entry per scoring,
appended and never dropped, kept when a new training run replaces the folder's run (`train -o RUN` again), whose
entries are then marked `earlier_run`.

Commands that score a folder's test split may run at once (a `recommend --run` while an `evaluate` holds the run's
lock, two `recommend`s), so every read-modify-write of the record holds an exclusive `flock` on the run folder
itself for the few milliseconds it takes: it waits for the other writer instead of dropping its entry. The folder,
not a file in it or beside it: no lock file is left in a run (or a folder swapped in by a rename), a read-only
folder can still be locked, and the run lock (`.RUN.lock`, held by `train` and `evaluate` for their whole run, and
refusing rather than waiting) is a different file, so the two never wait for each other.

It is a file of its own, not a run.json key: `export` records run.json's sha256 in a bundle and `backtest` warns
when run.json changed since, which re-scoring the same run must not set off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from booktower.utils.atomic import atomic_write_json
from booktower.utils.runinfo import launch_command

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_held = threading.local()  # run folders whose record lock this thread holds

TEST_SCORINGS = "test_scorings.json"
"""RUN/test_scorings.json: {"scorings": [entry, ...]}, oldest first. An entry: `at` (when), `command` (train,
train --resume, evaluate, ensemble, recommend, ...), `argv` (as typed), `model_sha256` (of the weights that
scored test: RUN/model/model.safetensors, as `sha256sum` gives it; null where the folder held none), `headline`
({"HR@K": x, "NDCG@K": y} at the first evaluation K; null for `recommend`, which writes the test lists without
scoring them), `earlier_run` (true once a new training run replaced the folder's run) and then `replaced_at`;
`folder_model: false` where the model that scored is not the folder's (RUN/model): the hold-out benchmarks' ensemble
of the RUN/seed-S runs, held only in memory (an entry without the key is the folder's model of its time)."""


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the model's weights serialized as `save_model` writes them: the digest `model_file_sha256`
    gives once they are saved, for a model held only in memory (whatever device its weights are on)."""
    from safetensors.torch import save

    tensors = {name: value.detach().to("cpu").contiguous() for name, value in model.state_dict().items()}
    return hashlib.sha256(save(tensors)).hexdigest()


def model_file_sha256(run_dir: Path | str) -> str | None:
    """sha256 of RUN/model/model.safetensors, the model a run's test split is scored with (training saves it
    before scoring; `evaluate`, `ensemble` and `recommend` load it); None where the folder holds none."""
    from booktower.models.io import WEIGHTS

    path = Path(run_dir) / "model" / WEIGHTS
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:  # streamed: the ID tables of a large catalogue take GBs
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


RECORD_FIX = ("restore it from a copy, or move it aside to start a new record (what it held is then no longer "
              "counted)")


def read_test_scorings(run_dir: Path | str) -> list[dict[str, Any]]:
    """The folder's recorded test scorings, oldest first; none for a folder (or an older run) without the file.
    A record that cannot be read is refused (DataError), never taken for an empty one."""
    path = Path(run_dir) / TEST_SCORINGS
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        from booktower.data.errors import DataError

        raise DataError(_unreadable(exc), path=path, fix=RECORD_FIX) from None
    entries = recorded.get("scorings") if isinstance(recorded, dict) else None
    return [entry for entry in entries or [] if isinstance(entry, dict)]


def record_problem(run_dir: Path | str) -> str | None:
    """Why RUN/test_scorings.json cannot be read, in words; None where it can be, or is missing. For a command
    that checks the record before it scores the test split and words the refusal itself."""
    try:
        json.loads((Path(run_dir) / TEST_SCORINGS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return _unreadable(exc)
    return None


def _unreadable(exc: Exception) -> str:
    return f"the record of the test split's scorings cannot be read ({exc})"


def headline(metrics: dict[str, float] | None, ks: list[int]) -> dict[str, float] | None:
    """HR and NDCG at the first K (the report's headline columns), of what `metrics` holds."""
    if metrics is None:
        return None
    return {key: float(metrics[key]) for key in (f"HR@{ks[0]}", f"NDCG@{ks[0]}") if key in metrics}


def record_test_scoring(run_dir: Path | str, command: str, model_sha256: str | None,
                        metrics: dict[str, float] | None, ks: list[int],
                        folder_model: bool = True) -> list[dict[str, Any]]:
    """Append one scoring of the test split to RUN/test_scorings.json (rewritten atomically, under the record's
    lock) and return every entry. `folder_model=False` marks a model that is not RUN/model. Logs a warning when
    the folder's test split has now been scored by more than one model."""
    run_dir = Path(run_dir)
    entry = {"at": _now(), "command": command, "argv": launch_command(), "model_sha256": model_sha256,
             "headline": headline(metrics, ks), "earlier_run": False}
    if not folder_model:
        entry["folder_model"] = False
    with record_lock(run_dir):
        entries = [*read_test_scorings(run_dir), entry]
        atomic_write_json(run_dir / TEST_SCORINGS, {"scorings": entries})
    models = scoring_models(entries)
    if len(models) > 1:
        log.warning("%s: the test split in this folder has now been scored by %d different models (%s, %d "
                    "scorings): picking among them by their test numbers selects on test. Fix: train each "
                    "candidate into its own --output-dir and choose on validation (booktower compare --split "
                    "validation)", run_dir, len(models),
                    run_dir / TEST_SCORINGS, len(entries))
    return entries


def mark_earlier_run(run_dir: Path | str) -> int:
    """Before a new training run replaces the folder's run: its entries stay, marked `earlier_run` with when it
    was replaced. Returns how many were marked."""
    run_dir = Path(run_dir)
    with record_lock(run_dir):
        entries = read_test_scorings(run_dir)
        current = [entry for entry in entries if not entry.get("earlier_run")]
        if not current:
            return 0
        replaced = _now()
        for entry in current:
            entry.update(earlier_run=True, replaced_at=replaced)
        atomic_write_json(run_dir / TEST_SCORINGS, {"scorings": entries})
    return len(current)


@contextmanager
def record_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive flock on the run folder for one read-modify-write of its record, waiting for another writer's
    (see the module's docstring); this thread may take it again inside (another thread waits). Where the folder
    cannot be opened (not made yet) or locked (some network mounts), the write goes on unlocked: what it writes
    then fails, or is the only writer's, as before."""
    key = os.path.realpath(run_dir)
    held: set[str] = _held.__dict__.setdefault("folders", set())
    fd = None
    if fcntl is not None and key not in held:
        try:
            fd = os.open(run_dir, os.O_RDONLY)
        except OSError:
            fd = None
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.add(key)
        except OSError as exc:
            log.warning("%s cannot be locked (%s): its %s is written unlocked, and a command writing it at the "
                        "same time could drop this entry", run_dir, exc, TEST_SCORINGS)
        yield
    finally:
        held.discard(key)
        os.close(fd)  # closing the descriptor releases the lock


def scoring_models(entries: list[dict[str, Any]]) -> list[str]:
    """The distinct models (`model_sha256`) that scored the test split, in the order they first did; an entry
    without one (a folder that held no model file) cannot be told apart and is not counted."""
    return list(dict.fromkeys(str(entry["model_sha256"]) for entry in entries if entry.get("model_sha256")))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def short(digest: str) -> str:
    """A model fingerprint as shown to a reader: its first 12 hex digits."""
    return digest[:12]
