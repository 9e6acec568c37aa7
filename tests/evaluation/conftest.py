"""A fake but complete run directory on tiny data: what `booktower train` writes, from a random scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from booktower.config import dump_config, load_config
from booktower.data.toy import random_prepared
from booktower.evaluation.baselines import run_baselines
from booktower.evaluation.diagnostics import embedding_diagnostics
from booktower.evaluation.run_eval import evaluate_parts, write_audit, write_metrics
from booktower.evaluation.split_identity import split_identity, write_split_identity
from booktower.utils.atomic import atomic_write_json


def factor_scorer(data, dim: int = 8, seed: int = 0):
    """A random factor model: (user vectors, item vectors, score_fn)."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((data.n_users, dim)).astype(np.float32)
    items = rng.standard_normal((data.n_items, dim)).astype(np.float32)

    def score_fn(index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(users[index]) @ torch.from_numpy(items).T  # (U, n_items)

    return users, items, score_fn


@pytest.fixture(scope="session")
def toy_data():
    return random_prepared(n_users=120, n_items=60, per_user=10, seed=2)


@pytest.fixture
def fake_run(tmp_path: Path, toy_data) -> Path:
    config = load_config(None, ["evaluation.bootstrap_samples=50", "evaluation.audit_users=2",
                                "baselines.als_iterations=2", "baselines.bpr_iterations=5"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(config))
    users, items, score_fn = factor_scorer(toy_data)
    evaluation = evaluate_parts(lambda part: score_fn, toy_data, config)
    write_metrics(run, evaluation)
    write_split_identity(run, split_identity(toy_data))
    rng = np.random.default_rng(0)
    atomic_write_json(run / "diagnostics.json", embedding_diagnostics(users, items, toy_data, rng, user_aug=users))
    write_audit(run, evaluation.test, toy_data, config, rng)
    atomic_write_json(run / "data_summary.json", toy_data.summary)
    pl.DataFrame({"epoch": [0, 1, 2], "loss": [2.0, 1.5, 1.2], "val_NDCG@10": [0.1, 0.15, 0.17],
                  "seconds": [1.0, 1.0, 1.1]}).write_csv(run / "epochs.csv")
    run_baselines(["pop", "itemknn", "ease"], config.baselines, toy_data, config.evaluation.ks, 0, run / "baselines")
    return run
