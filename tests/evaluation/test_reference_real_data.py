"""Real-data guards: the baselines reproduce the reference table of ../shared/data/README.md (within 3%)."""

from __future__ import annotations

import pytest

from booktower.config import load_config
from booktower.data.prepare import prepare
from booktower.evaluation.baselines import run_baselines

# movielens-100k reference figures from ../shared/data/README.md (EASE uses every item there)
REFERENCE = {
    "pop": {"HR@10": 0.0870, "NDCG@10": 0.0448, "HR@20": 0.1283, "NDCG@20": 0.0551, "HR@50": 0.2036, "NDCG@50": 0.0700},
    "itemknn": {"HR@10": 0.1103, "NDCG@10": 0.0572, "HR@20": 0.1739, "NDCG@20": 0.0733, "HR@50": 0.2906,
                "NDCG@50": 0.0961},
    "ease": {"HR@10": 0.1485, "NDCG@10": 0.0759, "HR@20": 0.2291, "NDCG@20": 0.0958, "HR@50": 0.3924,
             "NDCG@50": 0.1280},
}


@pytest.mark.slow
def test_movielens_baselines_match_reference(tmp_path, shared_data, repo_root, monkeypatch):
    if not (shared_data / "movielens-100k" / "u.data").exists():
        pytest.skip("../shared/data/movielens-100k not present")
    monkeypatch.chdir(repo_root)  # the config's data paths are relative to the repository root
    config = load_config("configs/movielens-100k.yaml", ["evaluation.ks=[10, 20, 50]"])
    data, _ = prepare(config.data)
    assert (data.n_users, data.n_items) == (943, 1349)
    table = run_baselines(list(REFERENCE), config.baselines, data, config.evaluation.ks, config.seed, tmp_path)
    for name, expected in REFERENCE.items():
        for key, value in expected.items():
            assert table[name]["test"][key] == pytest.approx(value, rel=0.03), (name, key)
