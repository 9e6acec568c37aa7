"""A checkpoint's state.json as `--resume` reads it back: every key checked before the trainer uses it, so a
damaged or hand-edited file is a CheckpointError naming the checkpoint, the key and the fix, never a KeyError
or TypeError from deep in the trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from booktower.training.checkpoint import STATE, CheckpointError

FIX = "train into a new --output-dir without --resume, or restore the run folder from a copy"


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bytes(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256
                                           for b in value)


def _rows(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(row, dict) for row in value)


Check = tuple[Callable[[Any], bool], str]
_COUNT: Check = (_count, "a whole number >= 0")
_BYTES: Check = (_bytes, "a generator state (a list of bytes)")
_OBJECT: Check = (lambda value: isinstance(value, dict), "an object")

_STATE: dict[str, Check] = {
    "epoch": _COUNT, "step": _COUNT, "stopped": (lambda value: isinstance(value, bool), "true or false"),
    "rows": (_rows, "a list of per-epoch objects"), "early_stopping": _OBJECT, "sampler": _OBJECT,
    "shuffle_generator": _BYTES, "dropout_generator": _BYTES, "torch_rng": _BYTES,
}
_NESTED: dict[str, dict[str, Check]] = {
    "early_stopping": {"best": (_number, "a number"), "best_epoch": _COUNT, "bad_epochs": _COUNT},
    "sampler": {"kind": (lambda value: isinstance(value, str), "a string"), "generator": _BYTES},
}


def damaged_state(directory: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"the checkpoint {directory} cannot be loaded ({STATE}: {problem}). Fix: {FIX}")


def _problems(values: dict[str, Any], checks: dict[str, Check], prefix: str = "") -> list[str]:
    problems = []
    for key, (valid, wanted) in checks.items():
        if key not in values:
            problems.append(f"no {prefix}{key}")
        elif not valid(values[key]):
            shown = repr(values[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            problems.append(f"{prefix}{key} is {shown}, not {wanted}")
    return problems


def checked_state(directory: Path, state: Any) -> dict[str, Any]:
    """`state` (what load_checkpoint returned from DIR/state.json) when it holds every key the trainer
    restores, each of the type training writes; otherwise a CheckpointError naming what is wrong."""
    if not isinstance(state, dict):
        raise damaged_state(directory, "it does not hold an object")
    problems = _problems(state, _STATE)
    for key, checks in _NESTED.items():
        if isinstance(state.get(key), dict):
            problems += _problems(state[key], checks, f"{key}.")
    if "cuda_rng" in state and not _bytes(state["cuda_rng"]):
        problems.append(f"cuda_rng is not {_BYTES[1]}")
    if problems:
        raise damaged_state(directory, "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else ""))
    return state


# What restoring a damaged state raises from torch or the trainer (a wrong-length generator state, the
# optimiser state of another shape, a sampler of another kind): a checkpoint error like any other.
_DAMAGED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError)


@contextmanager
def restoring(directory: Path) -> Iterator[None]:
    """Whatever loading and applying the checkpoint in `directory` raises: a CheckpointError naming it."""
    try:
        yield
    except (CheckpointError, torch.OutOfMemoryError):  # out of memory is the machine's, not the checkpoint's
        raise
    except _DAMAGED as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise damaged_state(directory, f"{type(exc).__name__}: {detail}") from None
