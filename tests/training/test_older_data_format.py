"""A run prepared by an older data layer, whose files prepare to another numbering now (reads ordered within the
second, placeholder ids dropped...), is told so: not that its unchanged files changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

from booktower.config import load_config
from booktower.data.errors import DataError
from booktower.data.prepare import CACHE_FORMAT
from booktower.data.vocab import Vocabulary
from booktower.training.pipeline import train_run
from booktower.training.run import load_run

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


def _renumbered(run: Path, data_format: int | None) -> None:
    """As if the run's layer had numbered the books in another order, and had recorded `data_format`."""
    path = run / "vocab" / "items.parquet"
    saved = Vocabulary.load(path)
    Vocabulary(pl.Series(saved.ids.to_list()[::-1]), name=saved.name).save(path)
    info = json.loads((run / "run.json").read_text())
    info.pop("data_format", None)
    if data_format is not None:
        info["data_format"] = data_format
    (run / "run.json").write_text(json.dumps(info))


def test_an_older_data_format_is_named_instead_of_changed_files(tmp_path):
    config = write_dataset(tmp_path / "data", 16)
    run = tmp_path / "run"
    train_run(load_config(config, ["training.epochs=1"]), run)
    assert json.loads((run / "run.json").read_text())["data_format"] == CACHE_FORMAT
    _renumbered(run, None)
    with pytest.raises(DataError, match=r"the input files are the ones it was trained on, but the run was prepared by "
                                        r"an older booktower \(a data format before 7"):
        load_run(run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "data_format": CACHE_FORMAT}))
    with pytest.raises(DataError) as today:  # prepared by this layer: the numbering moved for another reason
        load_run(run)
    assert "older booktower" not in str(today.value)
