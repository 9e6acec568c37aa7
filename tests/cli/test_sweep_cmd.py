"""`sweep --storage`: a storage Optuna cannot open is refused before the data is prepared."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("storage", "says"), [
    ("sweep.db", "--storage 'sweep.db' is not a database URL. Fix: pass e.g. sqlite:///sweep.db"),
    ("sqlite:///{tmp}/missing/sweep.db", "the folder {tmp}/missing does not exist"),
])
def test_sweep_refuses_a_storage_it_cannot_open(cli, tmp_path, storage, says) -> None:
    storage, says = storage.format(tmp=tmp_path), says.format(tmp=tmp_path)
    assert cli("sweep", "--storage", storage, "-o", tmp_path / "out").refused(says)


def test_sweep_storage_accepts_sqlite_in_an_existing_folder_and_other_databases() -> None:
    from booktower.cli.sweep_cmd import storage_url

    for url in ("sqlite:///sweep.db", "sqlite:///:memory:", "postgresql://host/db"):
        assert storage_url(url) == url


def test_sweep_refuses_a_misspelt_space_key_before_the_data_is_prepared(cli, tmp_path, monkeypatch) -> None:
    import importlib

    def refuse(*args, **kwargs):
        raise AssertionError("prepare() ran before the sweep space was checked")

    monkeypatch.setattr(importlib.import_module("booktower.data.prepare"), "prepare", refuse)
    space = "sweep.space={'training.optimizer.lrr': {type: float, low: 0.001, high: 0.01}}"
    outcome = cli("sweep", "--set", space, "--storage", f"sqlite:///{tmp_path / 's.db'}", "-o", tmp_path / "out")
    assert outcome.refused("sweep.space key 'training.optimizer.lrr'", "did you mean training.optimizer.lr?")
