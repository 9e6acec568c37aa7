"""Vocabulary.load of a damaged or edited file: a run's vocab/ file is a DataError naming it and the fix; a file
elsewhere (a cache entry, a bundle) raises what reading raised, for that folder's reader to name its fix."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from booktower.data.errors import DataError
from booktower.data.vocab import Vocabulary


@pytest.fixture
def run_vocab(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    path = tmp_path / "vocab" / "users.parquet"
    path.parent.mkdir()
    Vocabulary(["a", "b", "c"], name="user_id").save(path)
    return path


def test_a_whole_run_vocabulary_loads(run_vocab: Path):
    assert Vocabulary.load(run_vocab) == Vocabulary(["a", "b", "c"], name="user_id")


@pytest.mark.parametrize(("damage", "problem"), [
    ("truncated", "ComputeError"),
    ("two columns", "a vocabulary file has exactly one column"),
    ("repeated ids", "duplicate ids"),
])
def test_a_damaged_run_vocabulary_names_the_file_and_the_fix(run_vocab: Path, damage: str, problem: str):
    if damage == "truncated":
        run_vocab.write_bytes(run_vocab.read_bytes()[:20])
    elif damage == "two columns":
        pl.DataFrame({"user_id": ["a"], "other": [1]}).write_parquet(run_vocab)
    else:
        pl.DataFrame({"user_id": ["a", "a"]}).write_parquet(run_vocab)
    with pytest.raises(DataError, match=problem) as error:
        Vocabulary.load(run_vocab)
    message = str(error.value)
    assert message.startswith(f"file {run_vocab}: it is damaged, or was edited after booktower wrote it")
    assert message.endswith(f"Fix: restore {run_vocab.parent.parent} from a copy, or train the run again")
    with pytest.raises(DataError, match="Fix: MY FIX$"):
        Vocabulary.load(run_vocab, fix="MY FIX")


def test_a_damaged_vocabulary_elsewhere_raises_what_reading_raised(tmp_path: Path):
    path = tmp_path / "cache-entry" / "users.parquet"
    path.parent.mkdir()
    path.write_bytes(b"not parquet at all")
    with pytest.raises(pl.exceptions.PolarsError):  # store.load_cached and bundle_read name their own fixes
        Vocabulary.load(path)
