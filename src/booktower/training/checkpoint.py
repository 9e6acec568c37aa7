"""Checkpoints: a folder of safetensors (weights, optimiser tensors) + state.json, swapped in atomically."""

from __future__ import annotations

import json
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from booktower.models.io import WeightsError, reading_weights, save_model, state_tensors, write_tensors
from booktower.models.two_tower import TwoTower
from booktower.utils.atomic import fsync_files, make_temp_dir, named_as, writing
from booktower.utils.folder_lock import holds_run_lock

OPTIMIZER, STATE = "optimizer.safetensors", "state.json"


class CheckpointError(WeightsError):
    """A checkpoint that cannot be restored; the message names the folder and what to do instead."""


_READING_FIX = "train into a new --output-dir without --resume, or restore the run folder from a copy"


def _reading(directory: Path) -> AbstractContextManager[None]:
    return reading_weights(f"the checkpoint {directory}", _READING_FIX, CheckpointError)


def _split_optimizer_state(optimizers: list[torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Tensors go to safetensors (keyed `opt.param.name`); everything else stays JSON."""
    tensors: dict[str, torch.Tensor] = {}
    meta: list[dict] = []
    for k, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in sd["state"].items():
            for name, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{k}.{pid}.{name}"] = value.detach().to("cpu").contiguous().clone()
                else:
                    scalars.setdefault(str(pid), {})[name] = value
        meta.append({"param_groups": sd["param_groups"], "scalars": scalars})
    return tensors, meta


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: list[dict]) -> list[dict]:
    states: list[dict] = [{"state": {}, "param_groups": m["param_groups"]} for m in meta]
    for key, value in tensors.items():
        k, pid, name = key.split(".", 2)
        states[int(k)]["state"].setdefault(int(pid), {})[name] = value
    for k, m in enumerate(meta):
        for pid, scalars in m["scalars"].items():
            states[k]["state"].setdefault(int(pid), {}).update(scalars)
    return states


def _write_into(tmp: Path, model: TwoTower, optimizers: list[torch.optim.Optimizer],
                state: dict[str, Any]) -> None:
    save_model(model, tmp)
    tensors, meta = _split_optimizer_state(optimizers)
    write_tensors(tensors, tmp / OPTIMIZER)
    with writing(tmp / STATE):
        (tmp / STATE).write_text(json.dumps({**state, "optimizers": meta}))
    fsync_files(tmp)


def save_checkpoint(directory: Path, model: TwoTower, optimizers: list[torch.optim.Optimizer],
                    state: dict[str, Any]) -> None:
    """Write into a temporary sibling, then swap it in: a reader finds the old or the new checkpoint whole. A
    full disk raises an OSError naming the checkpoint file, and leaves the previous checkpoint as it was.

    The `.NAME.new.*` folders a killed save left are removed first only where this thread holds the run's lock:
    unlocked (see utils/folder_lock.py), another training may be writing the same folder, and they may be its."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(directory.parent, f".{directory.name}.new.", sole_writer=holds_run_lock(directory))
    try:
        with named_as(tmp, directory):  # `checkpoints/last/optimizer.safetensors`, not the hidden folder
            _write_into(tmp, model, optimizers, state)
        old = directory.parent / f".{directory.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def find_checkpoint(directory: Path) -> Path | None:
    """The checkpoint folder, or the previous one left by a crash between the two renames of a swap."""
    directory = Path(directory)
    if (directory / STATE).exists():
        return directory
    old = directory.parent / f".{directory.name}.old"
    return old if (old / STATE).exists() else None


def find_resume_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint `--resume` continues from: `last`, or `best` when no `last` was ever written. An epoch
    writes `best` before `last`, so a stop between the two in the first epoch leaves only `best`, which holds
    that epoch's whole state (optimiser included), as `last` would have."""
    return find_checkpoint(Path(checkpoints) / "last") or find_checkpoint(Path(checkpoints) / "best")


def load_checkpoint(directory: Path, model: TwoTower, optimizers: list[torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore weights and optimiser state in place; return the rest of the saved state."""
    with _reading(directory):
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        state = json.loads((directory / STATE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("optimizers"), list):
            raise CheckpointError(f"the checkpoint {directory} cannot be loaded ({STATE}: not the object with an "
                                  f"`optimizers` list that training writes). Fix: {_READING_FIX}")
        opt_states = _join_optimizer_state(load_file(str(directory / OPTIMIZER)), state.pop("optimizers"))
        if len(opt_states) != len(optimizers):
            raise CheckpointError(f"{directory}: the checkpoint has {len(opt_states)} optimisers, this run builds "
                                  f"{len(optimizers)}: the config changed since it was written")
        for opt, sd in zip(optimizers, opt_states):
            opt.load_state_dict(sd)
    device = next(model.parameters()).device
    for opt in optimizers:
        for pstate in opt.state.values():
            for name, value in pstate.items():
                if isinstance(value, torch.Tensor) and name != "step":
                    pstate[name] = value.to(device)
    return state


def load_weights(directory: Path, model: TwoTower) -> None:
    with _reading(Path(directory)):
        model.load_state_dict(load_file(str(Path(directory) / "model.safetensors")))


__all__ = ["CheckpointError", "find_checkpoint", "find_resume_checkpoint", "load_checkpoint", "load_weights",
           "save_checkpoint", "state_tensors"]
