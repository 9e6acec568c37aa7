"""A prepare-cache entry that cannot be read (a truncated NPZ or Parquet file, invalid JSON, a missing file,
files of two entries mixed) is a miss: a warning names the entry folder and what is wrong, the data is
prepared again and the entry replaced, whole. The NPZ is read with allow_pickle=False: it never unpickles."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.config.data import DataConfig
from booktower.data.prepare import prepare
from booktower.data.store import load_prepared
from booktower.data.synth import SynthConfig, write_synthetic


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _mix_in_another_entrys_users(entry: Path) -> None:
    """users.parquet of a smaller data set: every file reads, but they disagree on the number of readers."""
    import polars as pl

    from booktower.data.vocab import Vocabulary

    Vocabulary(pl.Series(["u1", "u2"]), name="user_id").save(entry / "users.parquet")


DAMAGES = {
    "truncated arrays.npz": (lambda entry: _truncate(entry / "arrays.npz"), "BadZipFile"),
    "invalid meta.json": (lambda entry: (entry / "meta.json").write_text('{"split_kind": "lea'),
                          "JSONDecodeError"),
    "truncated items.parquet": (lambda entry: _truncate(entry / "items.parquet"), "ComputeError"),
    "truncated summary.json": (lambda entry: _truncate(entry / "summary.json"), "JSONDecodeError"),
    "missing item_metadata.parquet": (lambda entry: (entry / "item_metadata.parquet").unlink(),
                                      "FileNotFoundError"),
    "meta.json of another layout": (lambda entry: (entry / "meta.json").write_text("{}"), "KeyError"),
    "users.parquet of another entry": (_mix_in_another_entrys_users, "users.parquet has 2 rows"),
}


@pytest.fixture
def cached(tmp_path) -> tuple[DataConfig, Path]:
    """(config, its cache entry): tiny synthetic data, prepared once."""
    write_synthetic(tmp_path / "d", SynthConfig(n_users=40, n_books=30, mean_history=10), seed=3)
    config = DataConfig.model_validate({
        "source": {"interactions": str(tmp_path / "d" / "users.csv"),
                   "items": str(tmp_path / "d" / "books.csv")},
        "cache_dir": str(tmp_path / "cache"), "min_user_interactions": 2, "min_item_interactions": 2,
    })
    data, _ = prepare(config)
    assert data.summary["cache"]["hit"] is False
    return config, Path(data.summary["cache"]["path"])


def _prepare_command(config: DataConfig, entry: Path):
    """`booktower prepare` of `config`'s files into a run folder beside the cache."""
    source = config.source
    return CliRunner().invoke(app, [
        "prepare", "-o", str(entry.parent.parent / "run"),
        "--set", f"data.source.interactions={source.interactions}",
        "--set", f"data.source.items={source.items}",
        "--set", f"data.cache_dir={config.cache_dir}",
        "--set", "data.min_user_interactions=2", "--set", "data.min_item_interactions=2"])


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_entry_is_a_miss_that_is_warned_about_and_replaced(cached, damage, caplog):
    config, entry = cached
    first = load_prepared(entry)
    damage_entry, why = DAMAGES[damage]
    damage_entry(entry)
    with caplog.at_level(logging.WARNING, logger="booktower.data.store"):
        again, _ = prepare(config)
    assert again.summary["cache"]["hit"] is False
    warned = [r.getMessage() for r in caplog.records if r.name == "booktower.data.store"]
    assert len(warned) == 1 and str(entry) in warned[0] and why in warned[0], warned
    np.testing.assert_array_equal(again.split.train.item, first.split.train.item)
    assert again.items == first.items and again.users == first.users
    # replaced whole: the next prepare reuses it, and nothing is left beside it
    assert prepare(config)[0].summary["cache"]["hit"] is True
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]


def test_a_damaged_entry_does_not_stop_the_prepare_command(cached, monkeypatch):
    config, entry = cached
    _truncate(entry / "arrays.npz")
    monkeypatch.chdir(entry.parent.parent)
    result = _prepare_command(config, entry)
    assert result.exit_code == 0, result.output
    flat = "".join(result.output.split())
    assert "".join(f"the prepared-data cache entry {entry} cannot be read (BadZipFile".split()) in flat
    assert "Traceback" not in result.output


class _Unpickled:
    """Unpickling this object makes the folder `marker`: proof that a load ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_an_entry_holding_a_pickled_object_is_never_unpickled(cached, tmp_path, caplog):
    config, entry = cached
    marker = tmp_path / "unpickled"
    with np.load(entry / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["train_user"] = np.array([_Unpickled(marker)], dtype=object)
    np.savez(entry / "arrays.npz", **arrays)
    with caplog.at_level(logging.WARNING, logger="booktower.data.store"):
        again, _ = prepare(config)
    assert not marker.exists()
    assert again.summary["cache"]["hit"] is False and "allow_pickle=False" in caplog.text


def test_an_older_entry_is_swapped_out_whole(cached):
    """An entry written over an older one: never a half-deleted folder, and nothing left beside it."""
    from booktower.data.store import save_prepared

    config, entry = cached
    data = load_prepared(entry)
    (entry / "stale-file-of-the-old-entry").write_text("x")
    save_prepared(data, entry)
    assert not (entry / "stale-file-of-the-old-entry").exists()
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]
    assert load_prepared(entry).items == data.items


def test_an_entry_another_process_put_in_place_first_is_kept(cached, monkeypatch):
    """Two runs preparing the same key at once: the one that renames second keeps the first's entry (the same
    data), rather than failing on the non-empty folder."""
    from booktower.data import store

    config, entry = cached
    data = load_prepared(entry)
    shutil.rmtree(entry)
    rename = Path.rename

    def other_process_first(self, target):
        if Path(target) == entry and not entry.exists():  # just before this run's rename, the other's lands
            other = entry.parent / "other"
            other.mkdir()
            store._write_entry(data, other)
            rename(other, entry)
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", other_process_first)
    store.save_prepared(data, entry)
    monkeypatch.undo()
    assert load_prepared(entry).items == data.items
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]


def test_a_cache_the_disk_refuses_is_warned_about_and_the_prepare_command_goes_on(cached, monkeypatch):
    import errno

    from booktower.data import store

    config, entry = cached
    shutil.rmtree(entry)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "save_prepared", full)
    result = _prepare_command(config, entry)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "could not be cached in" in said and "No space left on device" in said
    assert "prepared arrays not kept" in said and "Traceback" not in result.output
    assert not entry.exists()
