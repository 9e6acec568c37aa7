"""Atomic writes: a reader sees the old file or the whole new one, and a failed write leaves no trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from booktower.utils.atomic import atomic_path, atomic_write_json


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_json_takes_numpy_values_and_paths_and_refuses_other_objects(tmp_path):
    target = tmp_path / "sub" / "metrics.json"  # the folder is made
    atomic_write_json(target, {"n": np.int64(3), "x": np.float32(0.5), "v": np.arange(3), "p": Path("a/b")})
    assert json.loads(target.read_text()) == {"n": 3, "x": 0.5, "v": [0, 1, 2], "p": "a/b"}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text())["n"] == 3 and _leftovers(target.parent) == []


def test_written_files_and_swapped_in_folders_get_plain_permissions(tmp_path):
    """mkstemp makes 0600 files and mkdtemp 0700 folders: a run or bundle must be readable by another account
    (the one that serves it), as a plain write under the umask would make it."""
    import os
    import stat

    from booktower.utils.atomic import _umask, atomic_write_text, make_temp_dir

    atomic_write_text(tmp_path / "metrics.json", "{}")
    folder = make_temp_dir(tmp_path, ".model.")
    mask = _umask()
    assert stat.S_IMODE(os.stat(tmp_path / "metrics.json").st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~mask
    assert mask == os.umask(mask)  # reading it left it as it was


def test_a_checkpoint_has_the_umask_permissions(tmp_path):
    import os
    import stat

    import torch

    from booktower.config import load_config
    from booktower.data.toy import random_prepared
    from booktower.training.checkpoint import save_checkpoint
    from booktower.training.pipeline import build_model
    from booktower.utils.atomic import _umask

    data = random_prepared(n_users=20, n_items=15, per_user=5)
    model = build_model(load_config(None), data, torch.device("cpu"))
    optimizer = torch.optim.Adam(model.parameters())
    for parameter in model.parameters():  # one step, so the optimiser has state to write
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    save_checkpoint(tmp_path / "ckpt", model, [optimizer], {"epoch": 0})
    mask = _umask()
    for path in [tmp_path / "ckpt", *(tmp_path / "ckpt").rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path


def test_every_file_a_training_run_and_its_report_write_goes_through_a_temporary_name(tmp_path, monkeypatch,
                                                                                       small_config):
    """config.yaml and the report's PNGs included: a reader of the run (or a crash) never meets half a file."""
    import matplotlib.figure
    import polars as pl

    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import train_run

    written: list[Path] = []

    def recording(cls, name):
        original = getattr(cls, name)

        def write(self, target, *args, **kwargs):
            written.append(Path(self if cls is Path else target))
            return original(self, target, *args, **kwargs)

        monkeypatch.setattr(cls, name, write)

    for cls, name in ((Path, "write_text"), (Path, "write_bytes"), (matplotlib.figure.Figure, "savefig"),
                      (pl.DataFrame, "write_parquet"), (pl.DataFrame, "write_csv")):
        recording(cls, name)
    run = tmp_path / "run"
    train_run(small_config("training.epochs=1"), run, data=random_prepared(n_users=30, n_items=20, per_user=6))
    inside = [p.relative_to(run) for p in written if p.is_relative_to(run)]
    assert any(p.name.startswith(".config.yaml.") for p in inside)
    assert any(p.parent.name == "plots" and ".png." in p.name for p in inside)
    in_place = [str(p) for p in inside if not any(part.startswith(".") for part in p.parts)]
    assert in_place == []
