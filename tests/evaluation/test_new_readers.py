"""New readers (evaluation/new_readers.py): held-out readers never reach training, arrive with their own books,
and the item-based baselines serve them from those books alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from booktower.config import ConfigError, load_config
from booktower.config.data import DataConfig, SplitConfig
from booktower.config.model import ModelConfig
from booktower.data.toy import checkerboard_raw
from booktower.evaluation.new_readers import (
    fit_fold_in_baselines, history_matrix, new_reader_split, paired_against, rank_new_readers,
)
from booktower.evaluation.target_rank import hit_metrics
from booktower.models import TwoTower, spec_from_config

_CONFIG = DataConfig.model_validate({
    "min_user_interactions": 1, "min_item_interactions": 1,
    "columns": {"item_numeric": ["price"], "item_count_columns": [], "item_nonnegative": ["price"]},
})


def _split():
    return new_reader_split(checkerboard_raw(40), _CONFIG, 0.1, np.random.default_rng(1))


def test_held_out_readers_never_reach_training_and_keep_their_own_books() -> None:
    split = _split()
    data = split.data
    assert split.n_held == 4 and len(split.targets) + split.n_lost == 4 and len(split.targets) == 4
    held_users = set(checkerboard_raw(40).interactions["user_id"].unique().to_list()) - set(data.users.ids.to_list())
    assert len(held_users) == 4, "every interaction of a held-out reader is gone"
    for row, target in enumerate(split.targets):
        (test_book,) = data.items.decode([target])
        u = int(test_book[1:])  # the checkerboard's reader u has book u as its test book
        assert f"u{u}" in held_users
        books = set(data.items.decode(split.histories.row(row)))
        assert books == {f"b{i}" for i in range(40) if (i - u) % 2 == 0 and i != u}, "train + validation books"


def test_item_based_baselines_serve_a_new_reader_from_their_books() -> None:
    """In the checkerboard a reader's test book is the one unread book of their parity: ItemKNN and EASE, folding
    the reader in from their books, rank it first; popularity cannot tell parities apart."""
    split = _split()
    config = load_config(None, ["baselines.ease_lambda=1.0"])
    baselines = fit_fold_in_baselines(config, split.data)
    torch.manual_seed(0)
    data = split.data
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users, data.n_items))
    ranks = rank_new_readers(split, model, baselines, np.random.default_rng(0), chunk=3)
    result = {name: hit_metrics(found, [1, 5]) for name, found in ranks.items()}
    assert set(result) == {"two-tower", "pop", "itemknn", "ease"}
    assert result["itemknn"]["HR@1"] == 1.0 and result["ease"]["HR@1"] == 1.0
    assert result["pop"]["HR@1"] < 1.0
    assert 1.0 <= result["two-tower"]["mean_rank"] <= data.n_items
    against = paired_against(ranks, "ease", 1, np.random.default_rng(0))
    assert set(against) == {"two-tower", "pop", "itemknn"}
    assert against["itemknn"]["HR@1"]["diff"] == 0.0 and against["pop"]["HR@1"]["diff"] > 0


_CUTOFF = {"kind": "time_cutoff", "valid_start": "2020-09-30", "test_start": "2020-10-01"}  # 2 test books a reader


@pytest.mark.parametrize("split", [_CUTOFF, {"kind": "column"}])
def test_a_split_with_several_test_books_a_reader_is_refused_naming_the_key_and_the_fix(split) -> None:
    """Under a time cut-off (here each checkerboard reader's last two books are test) one test book of a reader
    was scored and the others neither scored nor masked: the protocol takes leave-last-out only."""
    config = _CONFIG.model_copy(update={"split": SplitConfig.model_validate(split)})
    with pytest.raises(ConfigError, match=rf"data.split.kind: {split['kind']}.*--set data.split.kind=leave_last_out"):
        new_reader_split(checkerboard_raw(40), config, 0.1, np.random.default_rng(1))


def test_the_benchmark_refuses_before_reading_the_log(tmp_path) -> None:
    from booktower.evaluation.new_readers import run_new_reader_eval

    config = load_config(None, [f"data.split.{key}={value}" for key, value in _CUTOFF.items()]
                         + ["data.source.interactions=/nonexistent/log.csv"])
    with pytest.raises(ConfigError, match="leave_last_out"):
        run_new_reader_eval(config, tmp_path / "run", 0.1)
    assert not (tmp_path / "run").exists()


def test_history_matrix_is_binary_rows_of_the_books_read() -> None:
    split = _split()
    matrix = history_matrix(split.histories, split.data.n_items)
    assert matrix.shape == (len(split.targets), split.data.n_items)
    for row in range(matrix.shape[0]):
        assert sorted(matrix[row].indices.tolist()) == sorted(set(split.histories.row(row).tolist()))
    assert set(matrix.data.tolist()) == {1.0}


def test_several_seeds_serve_the_held_out_readers_as_an_ensemble(tmp_path) -> None:
    """One split for every member (the base seed draws it), each member's run in its own folder, and the known
    readers' test metrics those of the members' ensemble."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from test_resume import write_dataset

    from booktower.data.errors import DropLedger
    from booktower.data.ingest import load_raw
    from booktower.evaluation import evaluate_split
    from booktower.evaluation.new_readers import run_new_reader_eval
    from booktower.models.ensemble import ensemble_of
    from booktower.models.io import load_model
    from booktower.training.scoring import score_fn_for

    config = load_config(write_dataset(tmp_path / "data", 16), ["training.epochs=1"])
    result = run_new_reader_eval(config, tmp_path / "run", 0.2, seeds=[1, 2])
    assert result["seeds"] == [1, 2] and result["n_scored"] > 0 and "two-tower" in result["new_readers"]
    members = [load_model(tmp_path / "run" / f"seed-{seed}" / "model") for seed in (1, 2)]
    raw, _ = load_raw(config.data, DropLedger())
    split = new_reader_split(raw, config.data, 0.2, np.random.default_rng(config.seed))
    known = evaluate_split(score_fn_for(ensemble_of(members), split.data, "test"), split.data, "test", [10, 20, 50])
    assert result["known_readers_test_metrics"]["NDCG@10"] == pytest.approx(known.metrics["NDCG@10"])
