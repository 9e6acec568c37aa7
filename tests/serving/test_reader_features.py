"""Reader metadata in `POST /recommendations`: /health names what the model reads, and names it does not read
are listed in the answer, not dropped without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest


@pytest.fixture(scope="module")
def reader_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle whose model reads each reader's `age` (numeric) and `band` (categorical)."""
    import torch

    from booktower.config.data import DataConfig
    from booktower.config.model import ModelConfig
    from booktower.config.serving import IndexConfig
    from booktower.data.errors import DropLedger
    from booktower.data.ingest import RawData
    from booktower.data.prepare import prepare_from_raw
    from booktower.models import TwoTower, spec_from_config
    from booktower.serving.export import export_parts, parts_from_model

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"b{i}", 1_600_000_000 + 3600 * t) for u in range(40)
            for t, i in enumerate(rng.choice(30, size=6, replace=False))]
    interactions = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
                                orient="row").with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))
    users = pl.DataFrame({"user_id": [f"u{u}" for u in range(40)], "num:age": [float(20 + u) for u in range(40)],
                          "cat:band": [["a", "b"][u % 2] for u in range(40)]})
    config = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1, "columns": {
        "user_numeric": ["age"], "user_categorical": ["band"], "item_numeric": [], "item_count_columns": [],
        "item_nonnegative": []}})
    data = prepare_from_raw(RawData(interactions, None, users, []), config, DropLedger())
    torch.manual_seed(0)
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users,
                                      data.n_items))
    directory = tmp_path_factory.mktemp("readers") / "b"
    export_parts(parts_from_model(data, model), directory, IndexConfig(kind="exact"), np.random.default_rng(0))
    return directory


@pytest.fixture(scope="module")
def client(reader_bundle: Path):
    from fastapi.testclient import TestClient

    from booktower.serving.api import create_app

    with TestClient(create_app(reader_bundle)) as test_client:
        yield test_client


def test_health_names_the_reader_features_the_model_reads(client) -> None:
    assert client.get("/health").json()["reader_features"] == {"age": "numeric", "band": "categorical"}


def test_names_the_model_does_not_read_are_listed_and_leave_the_answer_as_without_them(client) -> None:
    plain = client.post("/recommendations", json={"history": ["b1", "b2"], "k": 5, "features": {"age": 60}}).json()
    assert plain["unknown_features"] == []
    misspelt = client.post("/recommendations", json={"history": ["b1", "b2"], "k": 5,
                                                     "features": {"age": 60, "Band": "b", "town": "x"}}).json()
    assert misspelt["unknown_features"] == ["Band", "town"]
    assert misspelt["items"] == plain["items"]
    # the known ones do shape the vector: a reader of 20 in band b is answered differently (scores at least)
    other = client.post("/recommendations", json={"history": ["b1", "b2"], "k": 5,
                                                  "features": {"age": 20, "band": "b"}}).json()
    assert [i["score"] for i in other["items"]] != [i["score"] for i in plain["items"]]


def test_without_features_nothing_is_listed(client) -> None:
    answer = client.post("/recommendations", json={"history": ["b1"], "k": 3}).json()
    assert answer["unknown_features"] == []
