"""A checkpoint's state.json as `--resume` reads it: checked key by key (training.resume_state), so a damaged
or hand-edited one is a CheckpointError naming the checkpoint, what is wrong and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from booktower.training.checkpoint import CheckpointError
from booktower.training.resume_state import FIX, checked_state, restoring

FOLDER = Path("RUN/checkpoints/last")


def _state() -> dict:
    rng = torch.Generator().manual_seed(0).get_state().tolist()
    return {"epoch": 2, "step": 8, "stopped": False, "rows": [{"epoch": 1}, {"epoch": 2}],
            "early_stopping": {"best": float("-inf"), "best_epoch": 0, "bad_epochs": 0},
            "sampler": {"kind": "uniform", "generator": rng}, "shuffle_generator": rng,
            "dropout_generator": rng, "torch_rng": rng}


def test_a_state_as_training_writes_it_passes():
    state = _state()
    assert checked_state(FOLDER, state) is state
    assert checked_state(FOLDER, {**state, "cuda_rng": [0, 255]})["cuda_rng"] == [0, 255]


@pytest.mark.parametrize(("path", "value", "problem"), [
    (("sampler",), None, "no sampler"),
    (("epoch",), "one", "epoch is 'one', not a whole number >= 0"),
    (("epoch",), True, "epoch is True, not a whole number >= 0"),
    (("step",), -1, "step is -1, not a whole number >= 0"),
    (("stopped",), "no", "stopped is 'no', not true or false"),
    (("rows",), [1], "rows is [1], not a list of per-epoch objects"),
    (("early_stopping", "best"), "x", "early_stopping.best is 'x', not a number"),
    (("early_stopping", "bad_epochs"), None, "no early_stopping.bad_epochs"),
    (("sampler", "generator"), [300], "sampler.generator is [300], not a generator state"),
    (("cuda_rng",), "x", "cuda_rng is not a generator state"),
])
def test_each_damaged_key_is_named(path: tuple[str, ...], value: object, problem: str):
    state = copy.deepcopy(_state())
    parent = state
    for key in path[:-1]:
        parent = parent[key]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(CheckpointError) as error:
        checked_state(FOLDER, state)
    message = str(error.value)
    assert message.startswith(f"the checkpoint {FOLDER} cannot be loaded (state.json: {problem}")
    assert message.endswith(f"Fix: {FIX}")


def test_not_an_object_and_many_problems_at_once():
    with pytest.raises(CheckpointError, match=r"\(state\.json: it does not hold an object\)"):
        checked_state(FOLDER, [1])
    with pytest.raises(CheckpointError, match=r"no epoch; no step; no stopped; \.\.\."):
        checked_state(FOLDER, {})


def test_what_restoring_raises_becomes_a_checkpoint_error_and_one_passes_through():
    with pytest.raises(CheckpointError, match=r"\(state\.json: RuntimeError: .*size"):
        with restoring(FOLDER):
            torch.set_rng_state(torch.tensor([1, 2], dtype=torch.uint8))
    mine = CheckpointError("the checkpoint X cannot be loaded (its own words)")
    with pytest.raises(CheckpointError) as error:
        with restoring(FOLDER):
            raise mine
    assert error.value is mine


def test_out_of_memory_while_restoring_is_not_called_a_damaged_checkpoint():
    with pytest.raises(torch.OutOfMemoryError):
        with restoring(FOLDER):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
