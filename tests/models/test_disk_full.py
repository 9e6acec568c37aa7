"""A full disk while writing weights, checkpoints, bundles or the prepare cache: one `error:` line that names
the file (or the folder being written) and the fix, never a traceback; the previous files stay whole, and
`train --resume` finishes the run once space is freed. No real full disk: the writers are made to fail as
they do on one (safetensors and polars raise their own types, `write()` an OSError that names no file)."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors import SafetensorError
from typer.testing import CliRunner

from booktower.cli.app import app

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from test_resume import write_dataset  # noqa: E402

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"
POLARS_FULL = "parquet: File out of specification: underlying IO error: No space left on device (os error 28)"


def _flat(text: str) -> str:
    return "".join(text.replace("│", " ").split())  # rich wraps long lines at 80 columns, anywhere


def _refused(result, *parts: str) -> bool:
    """Exit status 2, no traceback, and every part in the `error:` line."""
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    return result.exit_code == 2 and not crashed and "Traceback" not in result.output and \
        all(_flat(part) in _flat(result.output) for part in ("error:", *parts))


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _write_dataset(folder: Path) -> Path:
    """The 12x12 checkerboard as CSV files, and a config that trains on it in a second (two epochs)."""
    config = write_dataset(folder, 12)
    config.write_text(config.read_text().replace("epochs: 5", "epochs: 2"))
    return config


def _train(config: Path, run: Path, *extra: str):
    return CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(run), *extra])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("disk_full")
    run = folder / "run"
    result = _train(_write_dataset(folder / "data"), run, "--set", "training.epochs=1")
    assert result.exit_code == 0, result.output
    return run


def _full_after(calls: int):
    """A safetensors `save_file` that writes `calls` files, then fails as on a full disk."""
    from safetensors.torch import save_file

    done = []

    def save(tensors, filename, *args, **kwargs):
        if len(done) >= calls:
            raise SafetensorError(SAFETENSORS_FULL)
        done.append(filename)
        return save_file(tensors, filename, *args, **kwargs)

    return save


def test_train_on_a_full_disk_names_the_checkpoint_file_and_resume_finishes(tmp_path, monkeypatch):
    config = _write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    # epoch 1 writes checkpoints/best and checkpoints/last (weights + optimiser each); epoch 2's best fails
    monkeypatch.setattr("booktower.models.io.save_file", _full_after(4))
    failed = _train(config, run)
    best = run / "checkpoints" / "best"
    assert _refused(failed, f"{best / 'model.safetensors'}: no space left on the device",
                    "Fix: free some space or write to another disk"), failed.output
    assert not [p for p in best.parent.iterdir() if p.name.startswith(".")]  # no half-written checkpoint
    monkeypatch.undo()  # space freed
    resumed = _train(config, run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert _flat("resumed from") in _flat(resumed.output) and (run / "metrics.json").is_file()


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from booktower.config.model import ModelConfig
    from booktower.data.toy import random_prepared
    from booktower.models import TwoTower, spec_from_config
    from booktower.training.checkpoint import load_weights, save_checkpoint

    data = random_prepared(n_users=8, n_items=10, per_user=3)
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users,
                                      data.n_items))
    optimizer = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "last", model, [optimizer], {"epoch": 1})
    monkeypatch.setattr("booktower.models.io.save_file", _full_after(1))  # the weights, not the optimiser
    with pytest.raises(OSError) as caught:
        save_checkpoint(tmp_path / "last", model, [optimizer], {"epoch": 2})
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "last" / "optimizer.safetensors")
    assert isinstance(_root_cause(caught.value), SafetensorError)
    load_weights(tmp_path / "last", model)  # the epoch-1 checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_save_model_on_a_full_disk_raises_an_os_error_naming_the_weights(tmp_path, monkeypatch):
    from booktower.models.io import WEIGHTS, save_model

    model = torch.nn.Linear(2, 2)
    model.spec = None  # never reached: the weights are written first
    monkeypatch.setattr("booktower.models.io.save_file", _full_after(0))
    with pytest.raises(OSError) as caught:
        save_model(model, tmp_path / "model")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / "model" / WEIGHTS))
    assert list((tmp_path / "model").iterdir()) == []  # no temporary file left behind


def test_export_on_a_full_disk_names_the_vectors_file(trained_run, tmp_path, monkeypatch):
    def full(tensors, filename, *args, **kwargs):
        raise SafetensorError(SAFETENSORS_FULL)

    monkeypatch.setattr("booktower.serving.bundle.save_file", full)
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["export", "--run", str(trained_run), "--output-dir", str(bundle)])
    assert _refused(result, f"{bundle.resolve() / 'item_vectors.safetensors'}: no space left on the device",
                    "Fix: free some space"), result.output  # the bundle's file, not the hidden temporary one
    assert not bundle.exists()


def test_export_names_its_output_folder_when_the_disk_error_names_no_file(trained_run, tmp_path, monkeypatch):
    def full(run, output_dir, index_kind=None):  # as `write()` fails on a full disk: no filename
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("booktower.serving.export.export_run", full)
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["export", "--run", str(trained_run), "--output-dir", str(bundle)])
    assert _refused(result, f"writing {bundle}: no space left on the device", "Fix: free some space"), \
        result.output


@pytest.mark.parametrize("raised", [
    SafetensorError(SAFETENSORS_FULL),
    pl.exceptions.ComputeError(POLARS_FULL),
    OSError("No space left on device (os error 28)"),  # polars' CSV writer: an errno only in the text
    OSError(errno.ENOSPC, "No space left on device"),  # write() / fsync(): no filename
    OSError(errno.EDQUOT, "Disk quota exceeded"),
])
def test_an_atomic_write_refused_by_the_disk_names_its_file(tmp_path, raised):
    from booktower.utils.atomic import atomic_path

    target = tmp_path / "items.parquet"
    target.write_text("old")
    with pytest.raises(OSError) as caught, atomic_path(target):
        raise raised
    assert caught.value.filename == str(target) and caught.value.errno in (errno.ENOSPC, errno.EDQUOT)
    assert caught.value.__cause__ is raised
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["items.parquet"]


@pytest.mark.parametrize("raised", [
    ValueError("not a disk error"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),  # a download's, not the disk's
    OSError(errno.ENOSPC, "No space left on device", "/elsewhere/already-named"),
])
def test_other_write_errors_pass_unchanged(tmp_path, raised):
    from booktower.utils.atomic import atomic_path

    with pytest.raises(type(raised)) as caught, atomic_path(tmp_path / "x.json"):
        raise raised
    assert caught.value is raised


def test_a_full_disk_while_caching_prepared_data_names_the_entry_and_keeps_the_old_one(tmp_path, monkeypatch):
    from booktower.data import store
    from booktower.data.toy import random_prepared

    data = random_prepared(n_users=8, n_items=10, per_user=3)
    entry = tmp_path / "cache" / "0123abcd"
    store.save_prepared(data, entry)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as caught:
        store.save_prepared(data, entry)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(entry))
    assert [p.name for p in entry.parent.iterdir()] == ["0123abcd"]
    assert store.load_prepared(entry).n_items == data.n_items  # the earlier entry, whole


def test_a_folder_that_refuses_the_temporary_file_names_the_file_asked_for(tmp_path, monkeypatch):
    import tempfile

    from booktower.utils.atomic import atomic_write_text

    def refused(prefix, suffix, dir):
        raise OSError(errno.EROFS, "Read-only file system", str(Path(dir) / f"{prefix}x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OSError) as caught:
        atomic_write_text(tmp_path / "test_scorings.json", "{}")
    assert (caught.value.errno, caught.value.filename) == (errno.EROFS, str(tmp_path / "test_scorings.json"))
