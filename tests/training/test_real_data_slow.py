"""Real-data guard (slow): the default model on MovieLens-100K clearly beats most-popular after a short run."""

from __future__ import annotations

import pytest

from booktower.config import load_config
from booktower.training.pipeline import train_run

MOST_POPULAR_NDCG20 = 0.0551  # ../shared/data/README.md, movielens-100k reference table


@pytest.mark.slow
def test_movielens_default_model_beats_most_popular(shared_data, tmp_path):
    config = load_config("configs/movielens-100k.yaml", [
        f"data.source.interactions={shared_data / 'movielens-100k'}", f"data.cache_dir={tmp_path / 'cache'}",
        "training.epochs=3", "training.progress=false", "training.num_threads=1",
        "training.early_stopping.patience=0",
    ])
    result = train_run(config, tmp_path / "run")
    ndcg = result.metrics["test"]["NDCG@20"]
    assert ndcg > 1.5 * MOST_POPULAR_NDCG20, f"test NDCG@20 {ndcg:.4f} is not clearly above most-popular"
