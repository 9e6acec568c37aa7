"""Real-data bars (slow): amazon-books-2014 prepare reproduces the protocol's counts."""

from __future__ import annotations

import pytest
from conftest import shared_data_path

from booktower.config import load_config
from booktower.data.prepare import prepare


@pytest.mark.slow
def test_amazon_books_2014_bar(repo_root, monkeypatch, tmp_path):
    shared_data_path("amazon-books-2014", "interactions.csv.gz")
    monkeypatch.chdir(repo_root)  # the config refers to ../shared/data relative to the repository
    cfg = load_config(repo_root / "configs" / "amazon-books-2014.yaml", [f"data.cache_dir={tmp_path}"]).data
    data, _ = prepare(cfg)
    summary = data.summary
    assert (summary["n_interactions"], summary["n_users"], summary["n_items"]) == (517_167, 38_234, 38_519)
    assert (summary["n_train"], summary["n_valid"], summary["n_test"]) == (440_699, 38_234, 38_234)
    again, _ = prepare(cfg)
    assert again.summary["cache"]["hit"] is True and again.n_items == 38_519
