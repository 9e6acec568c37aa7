"""Bootstrap intervals, slices and the paired comparison."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from booktower.evaluation.compare import compare_runs
from booktower.evaluation.stats import mean_ci, paired_compare, slice_table, with_activity


def test_mean_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.random(50)
    big = rng.random(5000)
    mean, low, high = mean_ci(small, np.random.default_rng(1), 500)
    assert low <= mean <= high
    _, low_b, high_b = mean_ci(big, np.random.default_rng(1), 500)
    assert high_b - low_b < high - low


def _table(values, items=None):
    n = len(values)
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(n)], "item_id": items or [f"b{i}" for i in range(n)],
                         "NDCG@10": values})


def test_paired_compare_detects_a_clear_win_and_no_difference():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = paired_compare(_table(base + 0.05), _table(base), "NDCG@10", np.random.default_rng(1), 500)
    assert better.diff == pytest.approx(0.05)
    assert better.p_bootstrap < 0.01 and better.p_wilcoxon < 1e-6 and better.wins == 400
    same = paired_compare(_table(base), _table(base), "NDCG@10", np.random.default_rng(1), 500)
    assert same.diff == 0 and same.p_wilcoxon == 1.0


def test_paired_compare_refuses_different_splits():
    with pytest.raises(ValueError, match="different items"):
        paired_compare(_table([0.1, 0.2]), _table([0.1, 0.2], ["b0", "x"]), "NDCG@10", np.random.default_rng(0))
    with pytest.raises(ValueError, match="different users"):
        paired_compare(_table([0.1, 0.2]), _table([0.1]), "NDCG@10", np.random.default_rng(0))


def test_activity_slices():
    table = pl.DataFrame({"n_train": [0, 1, 4, 5, 9, 10, 19, 20, 300], "HR@10": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]})
    sliced = slice_table(with_activity(table), "activity", ["HR@10"], ["0", "1-4", "5-9", "10-19", "20+"])
    assert sliced["activity"].to_list() == ["0", "1-4", "5-9", "10-19", "20+"]
    assert sliced["users"].to_list() == [1, 2, 2, 2, 2]
    assert sliced["HR@10"].to_list() == [0, 0.5, 1, 0, 1]


def test_compare_runs_reads_run_and_baseline_directories(fake_run):
    result = compare_runs(fake_run, fake_run / "baselines" / "itemknn", "NDCG@10", np.random.default_rng(0), 200)
    assert result.n_users == pl.read_parquet(fake_run / "per_user_test.parquet").height
    with pytest.raises(ValueError, match="choose from"):
        compare_runs(fake_run, fake_run, "NDCG@7", np.random.default_rng(0))
