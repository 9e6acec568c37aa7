"""Cold-item evaluation: the split never lets a held-out book into training; ranks and metrics are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from booktower.config import ConfigError, load_config
from booktower.config.data import DataConfig, SplitConfig
from booktower.config.model import ModelConfig
from booktower.data.toy import checkerboard_raw
from booktower.models import TwoTower, spec_from_config
from booktower.serving.cold_eval import cold_split, cold_split_raw, score_cold, score_new_books_in_histories

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


def test_every_book_the_reader_read_before_the_target_is_masked_held_out_ones_too(monkeypatch) -> None:
    """In the checkerboard a target's reader read every other held-out book of its parity before it. A stand-in
    model scores each held-out book 1, the target 0.5 and each trained book 0: with the reader's books masked the
    target ranks right after the held-out books of the other parity (the ones left unread), among the held-out
    books and in the whole catalogue alike. (Masking only the reduced data's books left the earlier held-out reads
    as candidates: rank 4 of 4 for every target, in both scopes.)"""
    from booktower.models import encode

    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    n, n_held = split.data.n_items, split.n_held
    scores = np.zeros((len(split.target_items), n + n_held), dtype=np.float32)  # (T, n + h): one row per target
    scores[:, n:] = 1.0
    scores[np.arange(len(split.target_items)), n + split.target_items] = 0.5
    one_hot = torch.eye(n + n_held)  # item c's vector picks column c of a reader's row
    monkeypatch.setattr(encode, "encode_items", lambda model, features, index=None: one_hot[:n] if index is None
                        else one_hot[n:])
    monkeypatch.setattr(encode, "encode_users", lambda *args: torch.from_numpy(scores))

    result = score_cold(split, None, np.random.default_rng(0), [1])["two-tower content"]
    held = [int(b[1:]) for b in split.held_catalogue["item_id"].to_list()]  # b38, b7, b27, b1
    expected = [1 + sum((b - held[t]) % 2 for b in held) for t in split.target_items]
    assert sorted(expected) == [2, 2, 2, 4]
    assert result["cold"]["mean_rank"] == result["all"]["mean_rank"] == np.mean(expected)


def test_split_lists_the_books_read_before_each_target_as_candidates() -> None:
    split = cold_split_raw(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))
    data, held = split.data, split.held_catalogue["item_id"].to_list()
    for row, (user, item) in enumerate(zip(data.users.decode(split.target_users), split.target_items)):
        u = int(user[1:])
        assert held[item] == f"b{u}"
        named = {held[c - data.n_items] if c >= data.n_items else data.items.decode([c])[0]
                 for c in split.target_read.row(row)}
        assert named == {f"b{i}" for i in range(40) if (i - u) % 2 == 0 and i != u}


_CUTOFF = {"kind": "time_cutoff", "valid_start": "2020-09-30", "test_start": "2020-10-01"}  # 2 test books a reader


@pytest.mark.parametrize("split", [_CUTOFF, {"kind": "column"}])
def test_a_split_with_several_test_books_a_reader_is_refused_naming_the_key_and_the_fix(split) -> None:
    config = _CONFIG.model_copy(update={"split": SplitConfig.model_validate(split)})
    with pytest.raises(ConfigError, match=rf"data.split.kind: {split['kind']}.*--set data.split.kind=leave_last_out"):
        cold_split_raw(checkerboard_raw(40), config, 0.1, np.random.default_rng(1))


def test_the_benchmark_refuses_before_reading_the_log() -> None:
    config = load_config(None, [f"data.split.{key}={value}" for key, value in _CUTOFF.items()]
                         + ["data.source.interactions=/nonexistent/log.csv"])
    with pytest.raises(ConfigError, match="leave_last_out"):
        cold_split(config, 0.1, np.random.default_rng(1))


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
