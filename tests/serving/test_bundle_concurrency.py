"""Bundles under concurrent use, with real processes: adds that run at once all land, and a reader never mixes
the files of two versions."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from booktower.serving.add_books import add_books
from booktower.serving.bundle import load_bundle, write_bundle

# Imported before "ready", so every child starts its add at the same moment (imports take seconds).
_PRELUDE = """
import sys, time
from pathlib import Path
import torch, booktower.models.two_tower, booktower.models.encode, booktower.data.featurize, booktower.data.ingest
from booktower.serving.add_books import add_books
print("ready", flush=True)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
"""
_ADD_ONE = _PRELUDE + "add_books(Path(sys.argv[2]), Path(sys.argv[3]))\n"
_ADD_MANY = _PRELUDE + "for books in sys.argv[3:]:\n    add_books(Path(sys.argv[2]), Path(books))\n"


def _books(path: Path, ids: list[str]) -> Path:
    pl.DataFrame({"item_id": ids, "title": [f"the history of {i}" for i in ids], "author": ["writer 1"] * len(ids),
                  "categories": ["Books > history"] * len(ids)}).write_csv(path)
    return path


def _start(script: str, go: Path, *args: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", script, str(go), *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready", child.stderr.read()
    return child


def _finish(child: subprocess.Popen) -> None:
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-2000:]


def test_index_adds_running_at_once_keep_every_book(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    go = tmp_path / "go"
    children = [_start(_ADD_ONE, go, bundle, _books(tmp_path / f"new{i}.csv", [f"NEW{i}"])) for i in range(3)]
    go.touch()
    for child in children:
        _finish(child)
    parts, manifest = load_bundle(bundle)
    assert sorted(parts.items.ids.to_list()[data.n_items:]) == ["NEW0", "NEW1", "NEW2"]
    assert manifest["added_books"] == 3


def test_a_reader_sees_one_whole_version_while_adds_rewrite_the_bundle(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    go = tmp_path / "go"
    files = [_books(tmp_path / f"new{i}.csv", [f"NEW{i}"]) for i in range(6)]
    writer = _start(_ADD_MANY, go, bundle, *files)
    go.touch()
    sizes, failures = [], []
    while writer.poll() is None:
        try:
            parts, manifest = load_bundle(bundle)  # its own checks refuse any mix of two versions
        except Exception as exc:  # noqa: BLE001 - collected, then reported together
            failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        assert manifest["n_items"] == len(parts.items) == parts.item_vectors.shape[0]
        sizes.append(len(parts.items))
    _finish(writer)
    assert not failures, failures[:3]
    assert sizes == sorted(sizes), "versions only move forward"
    assert len(load_bundle(bundle)[0].items) == data.n_items + 6


def test_a_writer_waits_for_a_reader_and_a_reader_for_a_writer(trained, tmp_path: Path) -> None:
    """The lock itself, across processes: a child holds the bundle's exclusive lock for a while; this process's
    load waits for it, then sees the child's version whole."""
    script = _PRELUDE + """
from booktower.serving._lock import bundle_lock
with bundle_lock(Path(sys.argv[2]), exclusive=True):
    Path(sys.argv[3]).touch()
    time.sleep(1.0)
    add_books(Path(sys.argv[2]), Path(sys.argv[4]))
"""
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    go, locked = tmp_path / "go", tmp_path / "locked"
    child = _start(script, go, bundle, locked, _books(tmp_path / "new.csv", ["LATE"]))
    go.touch()
    while not locked.exists():
        time.sleep(0.01)
    start = time.monotonic()
    parts, _ = load_bundle(bundle)
    assert time.monotonic() - start > 0.5, "the load waited for the writer"
    assert "LATE" in parts.items
    _finish(child)


def _plus_one_book(parts, item_id: str):
    from booktower.data.features import FeatureSpec
    from booktower.serving.add_books import standard_catalogue, with_books
    from booktower.serving.encoder import ModelEncoder

    frame = pl.DataFrame({"item_id": [item_id], "title": ["a history"], "author": [""], "categories": [""]})
    catalogue = standard_catalogue(frame, FeatureSpec.from_json(parts.feature_spec))
    return with_books(parts, ModelEncoder.from_parts(parts), catalogue)


def test_without_locks_a_load_that_overlaps_a_write_is_read_again(trained, tmp_path: Path, monkeypatch) -> None:
    """Where flock is unavailable (no fcntl, a read-only mount), the loader notices that the manifest changed while
    it read and reads again, so the parts still come from one version."""
    import booktower.serving._lock as lock
    import booktower.serving.bundle as bundle_module

    monkeypatch.setattr(lock, "fcntl", None)
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    parts, _ = load_bundle(bundle)
    read, calls = bundle_module._read_bundle, []

    def read_then_rewrite(directory: Path):
        result = read(directory)
        if not calls:  # a writer swaps a new version in just after the first read
            write_bundle(_plus_one_book(parts, "SWAPPED"), directory)
        calls.append(directory)
        return result

    monkeypatch.setattr(bundle_module, "_read_bundle", read_then_rewrite)
    fresh, manifest = load_bundle(bundle)
    assert len(calls) == 2 and "SWAPPED" in fresh.items and manifest["n_items"] == len(parts.items) + 1


def test_no_lock_file_possible_still_loads_and_writes(trained, tmp_path: Path, monkeypatch) -> None:
    """A bundle on a read-only mount (the lock file cannot be created) or without fcntl is served unlocked."""
    import booktower.serving._lock as lock

    bundle = shutil.copytree(trained[2], tmp_path / "b")
    monkeypatch.setattr(lock, "lock_path", lambda directory: tmp_path / "no-such-folder" / ".b.lock")
    assert len(load_bundle(bundle)[0].items) == trained[0].n_items
    add_books(bundle, _books(tmp_path / "new.csv", ["RO1"]))
    monkeypatch.setattr(lock, "fcntl", None)
    assert "RO1" in load_bundle(bundle)[0].items
    assert not (tmp_path / "no-such-folder").exists()


@pytest.mark.parametrize("outer", ["exclusive", "shared"])
def test_nested_locks_in_one_thread_do_not_wait_for_themselves(tmp_path: Path, outer: str) -> None:
    from booktower.serving._lock import bundle_lock

    with bundle_lock(tmp_path / "b", exclusive=outer == "exclusive"):
        with bundle_lock(tmp_path / "b", exclusive=False):
            pass
        if outer == "shared":
            with pytest.raises(RuntimeError, match="upgrade"):
                with bundle_lock(tmp_path / "b", exclusive=True):
                    pass
