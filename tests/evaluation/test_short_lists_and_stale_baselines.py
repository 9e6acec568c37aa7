"""Lists shorter than K (a reader who has read nearly everything) and baselines computed on another split."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from booktower.config import load_config
from booktower.data.toy import random_prepared
from booktower.evaluation import metrics as m
from booktower.evaluation.audit import match_rates, recommendation_audit
from booktower.evaluation.baselines import run_baselines
from booktower.evaluation.evaluator import evaluate_split
from booktower.evaluation.report import write_report
from booktower.evaluation.report_sections import _book
from booktower.evaluation.run_eval import top_k_frame
from booktower.evaluation.split_identity import split_identity


def _tiny_catalogue():
    # 12 books, 10 read by every reader (8 train, 1 valid, 1 test): at test 3 candidates are left (the test
    # book and the 2 never read), fewer than K = 5
    return random_prepared(n_users=30, n_items=12, per_user=10, seed=4)


def _scores(data):
    def score_fn(users: np.ndarray) -> torch.Tensor:
        return torch.arange(data.n_items, dtype=torch.float32).repeat(len(users), 1)  # (U, n_items)
    return score_fn


def test_masked_books_are_not_recommendations(caplog):
    data = _tiny_catalogue()
    with caplog.at_level(logging.WARNING):
        result = evaluate_split(_scores(data), data, "test", [5], users=None)
    assert any("fewer than 5 unread books" in r.message for r in caplog.records)
    frame = top_k_frame(result.top_k, data, 5)
    assert frame["score"].is_finite().all()
    per_user = frame.group_by("user_id").len()
    assert per_user["len"].max() == data.n_items - 9
    # every listed book is unread by its reader (train + validation)
    known = {(u, i) for part in (data.split.train, data.split.valid)
             for u, i in zip(data.users.decode(part.user), data.items.decode(part.item))}
    assert not any((row["user_id"], row["item_id"]) in known for row in frame.iter_rows(named=True))
    # coverage counts only the books shown: at most the unread ones
    shown = frame["item_id"].n_unique()
    assert result.metrics["coverage@5"] == shown / data.n_items


def test_coverage_skips_masked_entries():
    top = np.array([[0, 1, 2], [0, 3, 2]])
    valid = np.array([[True, True, False], [True, False, False]])
    assert m.coverage(top, 3, 4) == 1.0
    assert m.coverage(top, 3, 4, valid) == 0.5


def test_audit_lists_and_rates_skip_masked_books():
    data = _tiny_catalogue()
    result = evaluate_split(_scores(data), data, "test", [5])
    truth = data.items.encode(result.per_user["item_id"])
    audit = recommendation_audit(result.top_k, truth, data, "test", np.random.default_rng(0), n_users=3, k=5)
    for example in audit["examples"]:
        assert len(example["recommended"]) == data.n_items - 9
    top, valid = np.array([[0, 1]]), np.array([[True, False]])
    histories = {0: np.array([1])}
    labels = np.array([0, 1])
    assert match_rates(top, np.array([0]), histories, labels) == 0.5
    assert match_rates(top, np.array([0]), histories, labels, valid) == 0.0


def test_long_names_are_cut_visibly():
    text = _book({"title": "T", "author": "Alan Moore, Brian Bolland, Tim Sale and John Higgins"})
    assert "…" in text and "Alan Moore, Brian Bolland" in text
    assert _book({"title": "Short", "author": "A. Author"}) == "Short (A. Author)"


def _config():
    return load_config(None, ["evaluation.bootstrap_samples=20", "evaluation.audit_users=2"])


def test_report_leaves_out_baselines_of_another_split(fake_run):
    other = random_prepared(n_users=100, n_items=60, per_user=10, seed=9)
    config = _config()
    run_baselines(["pop"], config.baselines, other, config.evaluation.ks, 0, fake_run / "baselines")
    text = write_report(fake_run).read_text()
    headline = text.split("## Headline")[1].split("\n## ")[0]
    assert "| pop |" not in headline and "| itemknn |" not in headline
    assert "computed on another split (n_users 100 vs 120" in headline
    assert "## Paired comparison" not in text


def test_baselines_accumulate_on_one_split_and_restart_on_another(tmp_path, caplog):
    config = _config()
    data = random_prepared(n_users=60, n_items=40, per_user=8, seed=1)
    out = tmp_path / "baselines"
    run_baselines(["pop"], config.baselines, data, config.evaluation.ks, 0, out)
    run_baselines(["itemknn"], config.baselines, data, config.evaluation.ks, 0, out)
    assert sorted(json.loads((out / "metrics.json").read_text())) == ["itemknn", "pop"]
    assert json.loads((out / "split.json").read_text()) == split_identity(data)
    other = random_prepared(n_users=60, n_items=40, per_user=8, seed=2)
    with caplog.at_level(logging.WARNING):
        run_baselines(["pop"], config.baselines, other, config.evaluation.ks, 0, out)
    assert sorted(json.loads((out / "metrics.json").read_text())) == ["pop"]
    assert any("another split" in r.message for r in caplog.records)


def test_split_identity_changes_with_the_interactions():
    a = random_prepared(n_users=20, n_items=15, per_user=5, seed=1)
    b = random_prepared(n_users=20, n_items=15, per_user=5, seed=2)
    assert split_identity(a) == split_identity(random_prepared(n_users=20, n_items=15, per_user=5, seed=1))
    assert split_identity(a)["sha256"] != split_identity(b)["sha256"]
    assert {k: v for k, v in split_identity(a).items() if k != "sha256"} == {
        "n_users": 20, "n_items": 15, **a.split.sizes()}


def test_compare_refuses_runs_scored_on_different_splits(fake_run, tmp_path):
    import pytest

    from booktower.evaluation.compare import compare_runs

    other = random_prepared(n_users=100, n_items=60, per_user=10, seed=9)
    config = _config()
    run_baselines(["pop"], config.baselines, other, config.evaluation.ks, 0, tmp_path / "other")
    with pytest.raises(ValueError, match="different splits"):
        compare_runs(fake_run, tmp_path / "other" / "pop", "NDCG@10", np.random.default_rng(0), 50)
    compare_runs(fake_run, fake_run / "baselines" / "pop", "NDCG@10", np.random.default_rng(0), 50)


def test_compare_names_each_run_with_its_own_counts(fake_run, tmp_path):
    import pytest

    from booktower.evaluation.compare import compare_runs

    other = random_prepared(n_users=100, n_items=60, per_user=10, seed=9)
    config = _config()
    run_baselines(["pop"], config.baselines, other, config.evaluation.ks, 0, tmp_path / "other")
    with pytest.raises(ValueError) as refused:
        compare_runs(fake_run, tmp_path / "other" / "pop", "NDCG@10", np.random.default_rng(0), 50)
    assert f"{fake_run} and {tmp_path / 'other' / 'pop'} were scored on different splits (n_users 120 vs 100, " \
        in str(refused.value)
    with pytest.raises(ValueError) as reversed_:
        compare_runs(tmp_path / "other" / "pop", fake_run, "NDCG@10", np.random.default_rng(0), 50)
    assert "(n_users 100 vs 120, " in str(reversed_.value)


def test_split_mismatch_lists_the_counts_in_argument_order():
    from booktower.evaluation.split_identity import split_mismatch

    first = {"sha256": "a", "n_users": 687, "n_items": 50, "n_test": 687}
    second = {"sha256": "b", "n_users": 286, "n_items": 50, "n_test": 286}
    assert split_mismatch(first, second) == "n_users 687 vs 286, n_test 687 vs 286"
    assert split_mismatch(first, {**first}) is None and split_mismatch(first, None) is None


def test_baselines_of_another_split_are_moved_aside_not_left_beside_the_new_ones(fake_run, caplog):
    """The QA's case: `baselines --models pop` on another split left ease and itemknn in RUN/baselines, and
    `compare RUN RUN/baselines/ease` paired them as if they belonged to the new split."""
    import pytest

    from booktower.evaluation.compare import compare_runs

    out = fake_run / "baselines"
    earlier = json.loads((out / "split.json").read_text())
    other = random_prepared(n_users=100, n_items=60, per_user=10, seed=9)
    config = _config()
    with caplog.at_level(logging.WARNING):
        run_baselines(["pop"], config.baselines, other, config.evaluation.ks, 0, out)
    aside = fake_run / f"baselines-other-split-{earlier['sha256'][:8]}"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "pop", "split.json", "timings.json"]
    assert sorted(p.name for p in aside.iterdir()) == ["ease", "itemknn", "metrics.json", "pop", "split.json",
                                                        "timings.json"]
    assert json.loads((aside / "split.json").read_text()) == earlier
    message = " ".join(r.message for r in caplog.records)
    assert "another split" in message and "ease, itemknn, pop" in message and str(aside) in message
    with pytest.raises(FileNotFoundError, match=f"moved the earlier baselines aside, to {aside}"):
        compare_runs(fake_run, out / "ease", "NDCG@10", np.random.default_rng(0), 50)
    compare_runs(fake_run, aside / "ease", "NDCG@10", np.random.default_rng(0), 50)  # still of the run's split
    # a second change of split keeps the first copy and names a new folder
    run_baselines(["pop"], config.baselines, random_prepared(n_users=90, n_items=60, per_user=10, seed=3),
                  config.evaluation.ks, 0, out)
    assert (aside / "ease").is_dir() and len(list(fake_run.glob("baselines-other-split-*"))) == 2
