"""Saving and loading a TwoTower (or an Ensemble of them): safetensors weights + model.json (the ModelSpec). Never pickle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from booktower.models.ensemble import Ensemble, model_for_spec, spec_from_dict
from booktower.models.two_tower import TwoTower
from booktower.utils.atomic import atomic_path, atomic_write_json

WEIGHTS, SPEC = "model.safetensors", "model.json"


class WeightsError(ValueError):
    """Saved weights (a model or a checkpoint) that cannot be loaded; the message names them and the fix."""


@contextmanager
def reading_weights(what: str, fix: str, error: type[WeightsError] = WeightsError) -> Iterator[None]:
    """Damaged or mismatched weight files become one `error` naming `what` and `fix`. Writes are atomic, so this
    is a disk fault, a partial copy, or files from another run or version."""
    try:
        yield
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        if isinstance(exc, WeightsError):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise error(f"{what} cannot be loaded ({type(exc).__name__}: {detail}). Fix: {fix}") from None


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of every persistent tensor (what safetensors wants)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Atomically. A full (or read-only) disk raises an OSError naming `path`, not safetensors' own error
    type, so the CLI says which file and what to do (utils.atomic.writing)."""
    with atomic_path(path) as tmp:  # safetensors itself writes 0600 files
        save_file(tensors, str(tmp))


def save_model(model: TwoTower | Ensemble, directory: Path | str) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_tensors(state_tensors(model), directory / WEIGHTS)
    atomic_write_json(directory / SPEC, model.spec.to_dict())


def load_model(directory: Path | str, device: torch.device | str = "cpu") -> TwoTower | Ensemble:
    """A saved model (models.ensemble: or an ensemble of them), in eval mode."""
    directory = Path(directory)
    if not (directory / SPEC).exists():
        raise FileNotFoundError(f"{directory / SPEC} is missing: not a saved booktower model directory")
    with reading_weights(f"the model in {directory}", "train the run again, or restore its folder from a copy"):
        model = model_for_spec(spec_from_dict(json.loads((directory / SPEC).read_text())))
        model.load_state_dict(load_file(str(directory / WEIGHTS)))
    return model.to(device).eval()
