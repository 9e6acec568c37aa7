"""Writes of a bundle killed with SIGKILL (no `finally` runs), in a real process: the next write removes what they
left, saying so; a kill between the swap's two renames leaves no bundle, and every read then names the previous
version beside it and how to put it back, without ever reading it in the bundle's place."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from booktower.serving.bundle import BundleError, load_bundle, read_manifest, verify_bundle, write_bundle
from booktower.serving.service import Recommender

# Write the bundle SOURCE's parts to TARGET, killed mid-write (at the first fsync: the temporary folder holds
# files) or between the swap's renames (the bundle renamed to .NAME.old.<ns>, the new folder not yet in place).
_KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from booktower.serving.bundle import load_bundle, write_bundle

source, target, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
parts, _ = load_bundle(source)
die = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
if point == "write":
    os.fsync = die
else:
    rename = Path.rename
    def rename_then_die(self, to):
        rename(self, to)
        if ".old." in Path(to).name:
            die()
    Path.rename = rename_then_die
write_bundle(parts, target)
"""


def _killed_write(source: Path, target: Path, point: str) -> None:
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(source), str(target), point],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def _names(folder: Path, start: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(start))


def _removals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "interrupted writes left" in r.getMessage()]


def test_a_write_removes_the_folders_killed_writes_of_that_bundle_left(trained, tmp_path: Path, caplog) -> None:
    source = trained[2]
    bundle = shutil.copytree(source, tmp_path / "b")
    other = tmp_path / ".b.new.x.new.abcd1234"  # bundle `b.new.x`'s: never taken for `b`'s
    other.mkdir()
    for _ in range(3):
        _killed_write(source, bundle, "write")
    left = [name for name in _names(tmp_path, ".b.new.") if name != other.name]
    assert len(left) == 1, "each write (holding the lock) removed the folder of the kill before it"
    parts, _ = load_bundle(source)
    with caplog.at_level(logging.WARNING):
        write_bundle(parts, bundle)
    assert _names(tmp_path, ".b.new.") == [other.name] and _names(tmp_path, ".b.old.") == []
    assert len(_removals(caplog)) == 1 and left[0] in _removals(caplog)[0]
    verify_bundle(bundle)


def test_a_write_without_the_lock_leaves_the_folders_alone(trained, tmp_path: Path, monkeypatch, caplog) -> None:
    """Where the lock cannot be taken, a `.b.new.*` folder may be a live writer's: it is not removed."""
    import booktower.serving._lock as lock

    bundle = shutil.copytree(trained[2], tmp_path / "b")
    live = tmp_path / ".b.new.abcd1234"
    live.mkdir()
    monkeypatch.setattr(lock, "fcntl", None)
    parts, _ = load_bundle(bundle)
    with caplog.at_level(logging.WARNING):
        write_bundle(parts, bundle)
    assert live.is_dir() and _removals(caplog) == []


def test_a_kill_in_the_swap_is_named_by_every_read_and_the_next_write_cleans_up(trained, tmp_path: Path,
                                                                                caplog) -> None:
    source = trained[2]
    bundle = shutil.copytree(source, tmp_path / "b")
    _killed_write(source, bundle, "swap")
    assert not bundle.exists()
    [previous] = _names(tmp_path, ".b.old.")
    for read in (load_bundle, verify_bundle, read_manifest, Recommender.from_bundle):
        with pytest.raises(BundleError, match="interrupted") as caught:
            read(bundle)
        message = str(caught.value)
        assert f"the previous version is at {tmp_path / previous}" in message
        assert f"mv {tmp_path / previous} {bundle}" in message and "export again" in message

    (tmp_path / previous).rename(bundle)  # what the message says: the previous version serves again
    verify_bundle(bundle)

    _killed_write(source, bundle, "swap")
    assert not bundle.exists() and len(_names(tmp_path, ".b.old.")) == 1
    parts, _ = load_bundle(source)
    with caplog.at_level(logging.WARNING):
        write_bundle(parts, bundle)  # an export proceeds as usual
    verify_bundle(bundle)
    assert _names(tmp_path, ".b.") == [".b.lock"], "no temporary folder and no previous version is left"
    assert any(".b.old." in line for line in _removals(caplog))


def test_a_missing_bundle_without_a_previous_version_says_it_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / ".b.old.123").mkdir()  # a previous version removed halfway: not whole, not named
    with pytest.raises(BundleError, match="is not a bundle") as caught:
        load_bundle(tmp_path / "b")
    assert "interrupted" not in str(caught.value)


def test_after_a_kill_in_the_swap_the_commands_name_the_previous_version_and_an_export_keeps_its_withdrawals(
        trained, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from booktower.cli.app import app
    from booktower.config.serving import IndexConfig
    from booktower.serving.export import export_parts
    from booktower.serving.withdraw import change_withdrawn

    data, _, source, _ = trained
    bundle = shutil.copytree(source, tmp_path / "b")
    book = data.items.decode([3])[0]
    change_withdrawn(bundle, [book], withdraw=True)
    _killed_write(bundle, bundle, "swap")
    [previous] = _names(tmp_path, ".b.old.")
    for args in (["recommend", "--bundle", str(bundle), "--user", data.users.decode([0])[0]],
                 ["index", "withdraw", "--bundle", str(bundle), book]):
        result = CliRunner().invoke(app, args)
        said = "".join(result.output.split())  # long paths wrap anywhere
        assert result.exit_code == 2 and "wasinterrupted" in said
        assert f"mv{tmp_path / previous}{bundle}" in said, result.output
    parts, _ = load_bundle(source)
    export_parts(parts, bundle, IndexConfig(kind="exact"), np.random.default_rng(0))
    kept, _ = load_bundle(bundle)
    assert kept.withdrawn[3] and kept.withdrawn.sum() == 1  # the withdrawal of the version the kill left
