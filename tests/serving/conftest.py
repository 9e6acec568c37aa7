"""Planted-cluster vectors and a tiny in-memory bundle for serving tests (no trained model needed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from booktower.data.types import Ragged
from booktower.data.vocab import Vocabulary
from booktower.serving.bundle import BundleParts
from booktower.serving.encoder import EncodedBooks


def planted_clusters(n_clusters: int = 8, per_cluster: int = 40, dim: int = 16, noise: float = 0.05,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres (C, d), vectors (C * per, d), labels (C * per,)): unit vectors tightly around orthogonal-ish centres."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:n_clusters]  # (C, d) orthonormal
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    vectors = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return centres.astype(np.float32), vectors.astype(np.float32), labels


class MeanEncoder:
    """A stand-in model: a reader is the mean of their books; a new book sits on its category's centre."""

    def __init__(self, vectors: np.ndarray, centres: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.centres = centres

    def user_vectors(self, histories: Ragged, features=None) -> np.ndarray:
        rows = [self.vectors[histories.row(r)].mean(axis=0) for r in range(histories.n_rows)]
        return np.stack(rows).astype(np.float32)

    def encode_books(self, catalogue: pl.DataFrame) -> EncodedBooks:
        vectors = np.stack([self.centres[c[0]] for c in catalogue["categories"].to_list()]).astype(np.float32)
        return EncodedBooks(vectors, codes=None)

    def reader_features(self) -> dict[str, str]:
        return {}


def toy_parts(n_clusters: int = 4, per_cluster: int = 30, seen_per_user: int = 5) -> tuple[BundleParts, np.ndarray]:
    """Items in planted clusters; reader u belongs to cluster u % C and has read `seen_per_user` of its books."""
    centres, vectors, labels = planted_clusters(n_clusters, per_cluster, dim=8)
    n_users = 3 * n_clusters
    user_cluster = np.arange(n_users) % n_clusters
    seen = Ragged.from_lists([np.flatnonzero(labels == c)[:seen_per_user].tolist() for c in user_cluster])
    metadata = pl.DataFrame({
        "item_id": [f"b{i}" for i in range(len(labels))],
        "title": [f"book {i} of cluster {c}" for i, c in enumerate(labels)],
        "author": [f"author {c}" for c in labels],
        "categories": [f"Books > c{c}" for c in labels],
    })
    parts = BundleParts(
        item_vectors=vectors, user_vectors=centres[user_cluster], items=Vocabulary(metadata["item_id"], "item_id"),
        users=Vocabulary([f"u{u}" for u in range(n_users)], "user_id"), metadata=metadata, seen=seen,
        popularity=np.ones(len(labels), dtype=np.int64), feature_spec={"note": "toy"},
        model_files={"model.json": b"{}"}, n_model_items=len(labels),
    )
    return parts, labels


@pytest.fixture
def parts_and_labels() -> tuple[BundleParts, np.ndarray]:
    return toy_parts()


def wait_until(condition, seconds: float = 30.0) -> None:
    """Poll `condition` (a server's reload thread acts in the background) and fail if it never holds."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def toy_recommender(**serving: object):
    """A Recommender over `toy_parts` with the MeanEncoder (centres keyed by category tag c0, c1...)."""
    from booktower.config.serving import ServingConfig
    from booktower.serving.service import Recommender

    parts, labels = toy_parts()
    centres = {f"c{c}": parts.item_vectors[labels == c].mean(axis=0) for c in np.unique(labels)}
    return Recommender(parts, ServingConfig.model_validate(serving), MeanEncoder(parts.item_vectors, centres)), labels


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """(data, model, bundle_dir, manifest): a seeded, untrained two-tower model on random data, exported once."""
    import torch

    from booktower.config.model import ModelConfig
    from booktower.config.serving import IndexConfig
    from booktower.data.toy import random_prepared
    from booktower.models import TwoTower, spec_from_config
    from booktower.serving.export import export_parts, parts_from_model

    torch.manual_seed(0)
    data = random_prepared(n_users=60, n_items=40, per_user=8)
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users, data.n_items))
    directory = tmp_path_factory.mktemp("bundle") / "b"
    manifest = export_parts(parts_from_model(data, model), directory, IndexConfig(kind="hnsw"), np.random.default_rng(0))
    return data, model, directory, manifest


def _catalogue_bundle(directory: Path, model: dict, seeds: tuple[int, ...] = (0,)) -> tuple:
    """(data, bundle_dir, catalogue): 30 books whose model also reads a book's `language`
    (data.columns.item_categorical) and `price` (item_numeric), as ingest names them: cat:language, num:price.
    Several `seeds`: an ensemble of models initialised from them (models.ensemble)."""
    import torch

    from booktower.config.data import DataConfig
    from booktower.config.model import ModelConfig
    from booktower.config.serving import IndexConfig
    from booktower.data.errors import DropLedger
    from booktower.data.ingest import RawData
    from booktower.data.prepare import prepare_from_raw
    from booktower.models import TwoTower, spec_from_config
    from booktower.models.ensemble import ensemble_of
    from booktower.serving.export import export_parts, parts_from_model

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"b{i}", 1_600_000_000 + 3600 * t) for u in range(40)
            for t, i in enumerate(rng.choice(30, size=6, replace=False))]
    interactions = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
                                orient="row").with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))
    catalogue = pl.DataFrame({
        "item_id": [f"b{i}" for i in range(30)], "title": [f"the history of thing {i}" for i in range(30)],
        "author": [f"writer {i % 5}" for i in range(30)], "categories": [["Books", f"g{i % 3}"] for i in range(30)],
        "num:price": [float(5 + i % 7) for i in range(30)], "cat:language": [["eng", "fre", "ger"][i % 3] for i in range(30)],
    })
    config = DataConfig.model_validate({"min_user_interactions": 1, "min_item_interactions": 1, "columns": {
        "item_numeric": ["price"], "item_categorical": ["language"], "item_count_columns": [], "item_nonnegative": []}})
    data = prepare_from_raw(RawData(interactions, catalogue, None, []), config, DropLedger())
    spec = spec_from_config(ModelConfig.model_validate(model), data.user_features, data.item_features, data.n_users,
                            data.n_items)
    members = []
    for seed in seeds:
        torch.manual_seed(seed)
        members.append(TwoTower(spec))
        members[-1].fill_history_content(data.item_features)
    served = members[0] if len(members) == 1 else ensemble_of(members)
    export_parts(parts_from_model(data, served), directory, IndexConfig(kind="exact"), np.random.default_rng(0))
    return data, directory, catalogue


@pytest.fixture(scope="session")
def language_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(data, bundle_dir) of `_catalogue_bundle` with the default model."""
    data, directory, _ = _catalogue_bundle(tmp_path_factory.mktemp("language") / "b", {})
    return data, directory


@pytest.fixture(scope="session")
def content_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(data, bundle_dir, catalogue) of `_catalogue_bundle` with a model that pools the content of a history
    (author, categories, language, title tokens; model.history.content)."""
    return _catalogue_bundle(tmp_path_factory.mktemp("content") / "b", {"history": {"content": True}})


@pytest.fixture(scope="session")
def make_catalogue_bundle():
    """`_catalogue_bundle` itself: make_catalogue_bundle(directory, model_config, seeds) for a test's own variant."""
    return _catalogue_bundle
