"""Cold-item evaluation: the split never lets a held-out book into training; ranks and metrics are exact."""

from __future__ import annotations

import numpy as np
import torch

from booktower.config.data import DataConfig
from booktower.config.model import ModelConfig
from booktower.data.toy import checkerboard_raw
from booktower.models import TwoTower, spec_from_config
from booktower.serving.cold_eval import cold_split_raw, hit_metrics, rank_of_target, score_cold

_CONFIG = DataConfig.model_validate({
    "min_user_interactions": 1, "min_item_interactions": 1,
    "columns": {"item_numeric": ["price"], "item_count_columns": [], "item_nonnegative": ["price"]},
})


def test_rank_of_target_masks_and_breaks_ties() -> None:
    rng = np.random.default_rng(0)
    scores = np.array([0.9, 0.5, 0.7, 0.1])
    assert rank_of_target(scores, 2, np.array([0]), rng) == 1  # the better book is masked
    assert rank_of_target(scores, 3, np.zeros(0, dtype=np.int64), rng) == 4
    tied = [rank_of_target(np.zeros(4), 0, np.zeros(0, dtype=np.int64), rng) for _ in range(400)]
    assert set(tied) == {1, 2, 3, 4}


def test_hit_metrics_by_hand() -> None:
    metrics = hit_metrics(np.array([1, 3, 20]), [1, 10])
    assert metrics["HR@1"] == 1 / 3 and metrics["HR@10"] == 2 / 3
    assert np.isclose(metrics["NDCG@10"], (1.0 + 1.0 / np.log2(4)) / 3)


def test_held_out_books_never_reach_training() -> None:
    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    held = set(split.held_catalogue["item_id"].to_list())
    assert len(held) == 4 and not held & set(split.data.items.ids.to_list())
    assert split.held_catalogue["title"].null_count() == 0, "held books keep their metadata"
    # in the checkerboard reader u's test book is book u: held book b<i> is the target of reader u<i>
    targets = {split.data.users.decode([u])[0] for u in split.target_users}
    assert targets == {f"u{b[1:]}" for b in held}


def test_score_cold_runs_every_system() -> None:
    torch.manual_seed(0)
    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    data = split.data
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users, data.n_items))
    result = score_cold(split, model, np.random.default_rng(0), [5])
    assert set(result) == {"two-tower content", "popularity", "random"}
    for system in result.values():
        assert 0.0 <= system["all"]["HR@5"] <= 1.0 and 1.0 <= system["cold"]["mean_rank"] <= 4.0
    # popularity puts every never-read book after every read one
    assert result["popularity"]["all"]["mean_rank"] > data.n_items - 20
