"""Folders that killed writes leave (a SIGKILL between `make_temp_dir` and the swap) are removed by the next
write that knows it is the only writer, with a log line saying so; nothing else is ever taken."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from booktower.utils.atomic import make_temp_dir

# A checkpoint save killed (SIGKILL: no `finally` runs) at its first fsync, after its temporary folder is made.
_KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
import torch
from booktower.config import load_config
from booktower.data.toy import random_prepared
from booktower.training.checkpoint import save_checkpoint
from booktower.training.pipeline import build_model
from booktower.utils.folder_lock import run_lock

model = build_model(load_config(None), random_prepared(n_users=20, n_items=15, per_user=5), torch.device("cpu"))
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
with run_lock(Path(sys.argv[1]).parent.parent, "train"):  # a training's save: the run folder's sole writer
    save_checkpoint(Path(sys.argv[1]), model, [torch.optim.Adam(model.parameters())], {"epoch": 0})
"""


def _names(folder: Path, start: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(start))


def test_a_sole_writer_removes_the_folders_killed_writes_left_and_says_so(tmp_path: Path, caplog) -> None:
    killed = [make_temp_dir(tmp_path, ".b.new.") for _ in range(3)]
    (killed[0] / "item_vectors.safetensors").write_bytes(b"\0" * 4096)
    with caplog.at_level(logging.WARNING, logger="booktower.utils.atomic"):
        mine = make_temp_dir(tmp_path, ".b.new.", sole_writer=True)
    assert _names(tmp_path, ".b.new.") == [mine.name]
    lines = [r.getMessage() for r in caplog.records if "interrupted writes" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("removed 3 folder(s)") and str(tmp_path) in lines[0]
    assert all(folder.name in lines[0] for folder in killed)


def test_without_sole_writer_another_writers_folder_is_left_alone(tmp_path: Path, caplog) -> None:
    """A live writer's folder looks like a killed one's: only a caller that knows it is alone may remove them."""
    live = make_temp_dir(tmp_path, ".b.new.")
    with caplog.at_level(logging.WARNING, logger="booktower.utils.atomic"):
        mine = make_temp_dir(tmp_path, ".b.new.")
    assert _names(tmp_path, ".b.new.") == sorted([live.name, mine.name]) and not caplog.records


def test_only_the_prefix_own_folders_are_taken(tmp_path: Path) -> None:
    """`.b.new.` + mkdtemp's eight characters is bundle `b`'s; the rest belongs to others or to no write."""
    from booktower.utils.atomic import leftover_dirs

    other_bundle = tmp_path / ".b.new.x.new.abcd1234"  # bundle `b.new.x`'s temporary folder
    short = tmp_path / ".b.new.abc"
    a_file = tmp_path / ".b.new.abcdefgh"
    target = tmp_path / "kept"
    for folder in (other_bundle, short, target):
        folder.mkdir()
    a_file.write_text("not a folder")
    (tmp_path / ".b.new.zzzzzzzz").symlink_to(target, target_is_directory=True)
    ours = tmp_path / ".b.new.a1_b2c3d"
    ours.mkdir()
    assert leftover_dirs(tmp_path, ".b.new.") == [ours]
    make_temp_dir(tmp_path, ".b.new.", sole_writer=True)
    assert not ours.exists() and other_bundle.is_dir() and short.is_dir() and a_file.is_file() and target.is_dir()
    assert leftover_dirs(tmp_path / "missing", ".b.new.") == []


def test_a_checkpoint_save_removes_what_killed_saves_left(tmp_path: Path, caplog) -> None:
    import torch

    from booktower.config import load_config
    from booktower.data.toy import random_prepared
    from booktower.training.checkpoint import find_checkpoint, save_checkpoint
    from booktower.training.pipeline import build_model
    from booktower.utils.folder_lock import run_lock

    checkpoints = tmp_path / "checkpoints"
    for _ in range(2):
        child = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(checkpoints / "last")],
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert len(_names(checkpoints, ".last.new.")) == 1, "each save removed the folder the previous kill left"

    model = build_model(load_config(None), random_prepared(n_users=20, n_items=15, per_user=5), torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="booktower.utils.atomic"), run_lock(tmp_path, "train"):
        save_checkpoint(checkpoints / "last", model, [torch.optim.Adam(model.parameters())], {"epoch": 1})
    assert _names(checkpoints, ".last.") == [] and find_checkpoint(checkpoints / "last") == checkpoints / "last"
    assert any("removed 1 folder(s)" in r.getMessage() for r in caplog.records)
    assert os.listdir(checkpoints) == ["last"]
