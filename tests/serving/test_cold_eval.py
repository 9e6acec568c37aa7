"""Cold-item evaluation: the split never lets a held-out book into training; ranks and metrics are exact."""

from __future__ import annotations

import numpy as np
import torch

from booktower.config.data import DataConfig
from booktower.config.model import ModelConfig
from booktower.data.toy import checkerboard_raw
from booktower.models import TwoTower, spec_from_config
from booktower.serving.cold_eval import cold_split_raw, score_cold, score_new_books_in_histories

_CONFIG = DataConfig.model_validate({
    "min_user_interactions": 1, "min_item_interactions": 1,
    "columns": {"item_numeric": ["price"], "item_count_columns": [], "item_nonnegative": ["price"]},
})


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


def test_readers_of_held_out_books_keep_them_in_their_history_past_the_trained_books() -> None:
    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    data, readers = split.data, split.readers_of_new
    held = split.held_catalogue["item_id"].to_list()
    held_parities = {int(b[1:]) % 2 for b in held}
    expected = {f"u{u}" for u in range(40) if u % 2 in held_parities and f"b{u}" not in held}
    assert set(data.users.decode(readers.users)) == expected
    for row, (user, item) in enumerate(zip(data.users.decode(readers.users), readers.items)):
        u = int(user[1:])
        assert data.items.decode([item]) == [f"b{u}"], "the test book is the reader's last"
        books = readers.histories.row(row)
        named = [held[b - data.n_items] if b >= data.n_items else data.items.decode([b])[0] for b in books]
        assert set(named) == {f"b{i}" for i in range(40) if (i - u) % 2 == 0 and i != u}, "every earlier book"
        assert (books >= data.n_items).any()


def test_new_books_in_histories_are_scored_with_and_without_them() -> None:
    torch.manual_seed(0)
    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    data, readers = split.data, split.readers_of_new
    for content, n_readers in ((True, len(split.readers_of_new.users)), (False, None)):
        config = ModelConfig.model_validate({"history": {"content": content}})
        model = TwoTower(spec_from_config(config, data.user_features, data.item_features, data.n_users, data.n_items))
        model.fill_history_content(data.item_features)
        result = score_new_books_in_histories(split, model, np.random.default_rng(0), k=5)
        if not content:
            assert "does not pool" in result["skipped"]
            continue
        assert result["n_readers"] == n_readers > 0 and result["mean_new_books_read"] >= 1
        assert result["all"]["NDCG@5"]["n_users"] == n_readers
        last_new = [readers.histories.row(r)[-1] >= data.n_items for r in range(n_readers)]
        assert result["last_read_new"]["n_readers"] == sum(last_new)
        assert model.history_content.n_items == data.n_items, "the model scored is left as it was"


def test_an_ensemble_scores_new_books_as_a_single_model_does() -> None:
    """The hold-out benchmarks' --seeds serve their members as an ensemble: content-only vectors and histories
    with new books go through every member."""
    from booktower.models.ensemble import ensemble_of

    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    data = split.data
    config = ModelConfig.model_validate({"history": {"content": True}})
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(TwoTower(spec_from_config(config, data.user_features, data.item_features, data.n_users,
                                                 data.n_items)))
        members[-1].fill_history_content(data.item_features)
    ensemble = ensemble_of(members)
    cold = score_cold(split, ensemble, np.random.default_rng(0), [5])
    assert 0 <= cold["two-tower content"]["cold"]["HR@5"] <= 1
    result = score_new_books_in_histories(split, ensemble, np.random.default_rng(0), k=5)
    assert result["n_readers"] > 0 and "skipped" not in result
    assert all(m.history_content.n_items == data.n_items for m in ensemble.members), "left as it was"
