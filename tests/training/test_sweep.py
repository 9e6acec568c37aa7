"""The sweep: samples the declared space, reads validation only, resumes from its storage."""

from __future__ import annotations

import polars as pl
import pytest

from booktower.config import ConfigError, load_config
from booktower.data.toy import random_prepared
from booktower.training import sweep as sweep_module

pytest.importorskip("optuna")

SPACE = [
    "sweep.space={'training.optimizer.lr': {type: float, low: 0.001, high: 0.01, log: true},"
    " 'model.history.pooling': {type: categorical, choices: [mean, recency]}}",
    "sweep.pruner=none",
]
SMALL = ["training.early_stopping.metric=HR@50", "training.epochs=2", "training.batch_size=256", "training.progress=false", "data.cache_dir=null",
         "model.item.feature_hidden=[16]", "model.user.feature_hidden=[16]", "training.negatives.num_negatives=16"]


def _interrupts_at(call: int, rates: list[float]):
    """A trial function that records each trial's learning rate and is cut short by Ctrl-C in its `call`-th trial."""
    def train(config, trial_dir, report):
        rates.append(config.training.optimizer.lr)
        if len(rates) == call:
            raise KeyboardInterrupt
        return 0.1 * len(rates)

    return train


def test_sweep_runs_resumes_and_never_scores_test(tmp_path, parts_scored):
    data = random_prepared(n_users=60, n_items=40, per_user=8)
    config = load_config(None, SMALL + SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = sweep_module.run_sweep(config, 2, storage, "t", tmp_path / "out", sweep_module.validation_trial(data))
    assert result.table.height == 2
    assert set(parts_scored) == {"validation"}
    best = load_config(tmp_path / "out" / "best_config.yaml")
    best_trial = int(result.table["trial"][0])
    trained = load_config(tmp_path / "out" / f"trial_{best_trial:04d}" / "config.yaml")
    assert best.model_dump() == trained.model_dump()  # the best config is the one that trained, early stopping too
    assert best.training.early_stopping.metric == config.sweep.metric != config.training.early_stopping.metric
    assert best.model.history.pooling in ("mean", "recency")
    assert not (tmp_path / "out" / f"trial_{best_trial:04d}" / "checkpoints").exists()  # only disk, never read
    assert (tmp_path / "out" / f"trial_{best_trial:04d}" / "epochs.csv").exists()
    assert 0.001 <= best.training.optimizer.lr <= 0.01

    again = sweep_module.run_sweep(config, 3, storage, "t", tmp_path / "out", sweep_module.validation_trial(data))
    assert again.table.height == 3  # continued the stored study: one more trial, not three
    assert pl.read_parquet(tmp_path / "out" / "trials.parquet").height == 3


def test_sweep_without_space_is_an_error(tmp_path):
    config = load_config(None, SMALL)
    with pytest.raises(ConfigError, match="sweep.space"):
        sweep_module.run_sweep(config, 1, f"sqlite:///{tmp_path / 's.db'}", "t", tmp_path, lambda *a: 0.0)


def test_trial_config_applies_dotted_keys():
    base = load_config(None)
    config = sweep_module.trial_config(base, {"training.loss.cal_weight": 0.3, "model.history.pooling": "attention"})
    assert config.training.loss.cal_weight == 0.3
    assert config.model.history.pooling == "attention"


def test_trials_honour_the_thread_limit(tmp_path):
    """training.num_threads caps a sweep's trials as it caps `train` (two sweeps sharing a 2-core machine)."""
    import torch

    data = random_prepared(n_users=30, n_items=20, per_user=6)
    config = load_config(None, [*SMALL, "training.epochs=1", "training.num_threads=1"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        sweep_module.validation_trial(data)(config, tmp_path / "trial", lambda epoch, value: None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_a_resumed_study_draws_new_points(tmp_path):
    """A second run on the same storage (a resume, or a second worker) must not repeat the first run's random
    start-up draws, which a sampler re-created with the same seed would."""
    config = load_config(None, SMALL + SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def instant(trial_config, trial_dir, report):  # no training: the draws are what is under test
        return trial_config.training.optimizer.lr

    sweep_module.run_sweep(config, 2, storage, "t", tmp_path / "out", instant)
    table = sweep_module.run_sweep(config, 4, storage, "t", tmp_path / "out", instant).table
    lrs = table["param:training.optimizer.lr"].to_list()
    assert len(lrs) == 4 and len(set(lrs)) == 4


def test_a_sweep_metric_validation_does_not_report_stops_before_any_trial(tmp_path):
    config = load_config(None, SMALL + SPACE + ["sweep.metric=NDCG@25"])  # loads: other commands ignore it

    def never(*args):
        raise AssertionError("no trial may run")

    with pytest.raises(ConfigError, match=r"sweep.metric: 'NDCG@25' is not a validation metric"):
        sweep_module.run_sweep(config, 1, f"sqlite:///{tmp_path / 's.db'}", "t", tmp_path / "out", never)


def test_failed_trials_do_not_count_towards_the_requested_number(tmp_path):
    """A trial cut short (Ctrl-C marks it FAIL) is made up for by the next run of the same command."""
    config = load_config(None, SMALL + SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    flaky = _interrupts_at(2, [])
    with pytest.raises(KeyboardInterrupt):
        sweep_module.run_sweep(config, 3, storage, "t", tmp_path / "out", flaky)
    result = sweep_module.run_sweep(config, 3, storage, "t", tmp_path / "out", flaky)
    states = result.table["state"].to_list()
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1


def test_a_resumed_sweep_trains_the_interrupted_trials_parameters_first(tmp_path):
    config = load_config(None, SMALL + SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    seen = []
    cut_at_second = _interrupts_at(2, seen)
    with pytest.raises(KeyboardInterrupt):
        sweep_module.run_sweep(config, 3, storage, "t", tmp_path / "out", cut_at_second)
    result = sweep_module.run_sweep(config, 3, storage, "t", tmp_path / "out", cut_at_second)
    assert seen[2] == seen[1]  # the first trial after the resume trains what the interrupt cut short
    assert len(set(seen)) == 3 and len(seen) == 4
    complete = result.table.filter(pl.col("state") == "COMPLETE")
    assert seen[1] in complete["param:training.optimizer.lr"].to_list()
    again = sweep_module.run_sweep(config, 3, storage, "t", tmp_path / "out", cut_at_second)
    assert len(seen) == 4 and again.table.height == 4  # done: nothing is queued twice


def test_a_trial_cut_short_by_ctrl_c_is_logged_without_its_traceback():
    import logging
    import sys

    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = logging.LogRecord("optuna", logging.WARNING, "", 0, "Trial 2 failed", None, sys.exc_info())
    try:
        raise ValueError("a real bug")
    except ValueError:
        failed = logging.LogRecord("optuna", logging.WARNING, "", 0, "Trial 3 failed", None, sys.exc_info())
    assert sweep_module._no_interrupt_traceback(interrupted) and interrupted.exc_info is None
    assert sweep_module._no_interrupt_traceback(failed) and failed.exc_info is not None


@pytest.mark.parametrize(("space", "says"), [
    ("{'model.typo_key': {type: int, low: 1, high: 3}}", "model.typo_key: unknown key; allowed here: dat,"),
    ("{'training.optimizer.lrr': {type: float, low: 0.001, high: 0.01}}",
     "training.optimizer.lrr: unknown key (did you mean training.optimizer.lr?)"),
    ("{'training.epochs': {type: float, low: 1, high: 3}}", "declare it with type: int"),
    ("{'model.history.pooling': {type: categorical, choices: [mean, maxx]}}", "(got 'maxx')"),
])
def test_a_space_key_no_trial_could_apply_stops_before_any_trial(tmp_path, space, says):
    config = load_config(None, SMALL + [f"sweep.space={space}"])

    def never(*args):
        raise AssertionError("no trial may run")

    with pytest.raises(ConfigError) as err:
        sweep_module.run_sweep(config, 1, f"sqlite:///{tmp_path / 's.db'}", "t", tmp_path / "out", never)
    assert str(err.value).startswith("sweep.space key") and says in str(err.value)
    assert "pydantic" not in str(err.value)


def test_a_cross_key_check_is_left_to_the_trials_that_draw_the_keys_together():
    """Checked one at a time against the base config, a value may break a check across keys that the values
    drawn with it satisfy: only errors about the key itself refuse the sweep."""
    valid = load_config(None, SMALL + SPACE)
    sweep_module.check_sweep(valid)
    assert sweep_module._related(("model", "history"), ("model", "history", "pooling"))
    assert not sweep_module._related(("model", "item"), ("model", "history", "pooling"))
    assert sweep_module.drawable_values(valid.sweep.space["training.optimizer.lr"])[0] == 0.001


def test_a_trial_with_an_invalid_combination_is_logged_without_its_traceback():
    import logging
    import sys

    try:
        raise ConfigError("sampled parameters {...}: the config is not valid")
    except ConfigError:
        record = logging.LogRecord("optuna", logging.WARNING, "", 0, "Trial 1 failed", None, sys.exc_info())
    assert sweep_module._no_interrupt_traceback(record) and record.exc_info is None


def test_an_interrupted_trial_outside_a_narrowed_space_is_not_retried(tmp_path):
    config = load_config(None, SMALL + SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    rates = []
    cut_first = _interrupts_at(1, rates)
    with pytest.raises(KeyboardInterrupt):
        sweep_module.run_sweep(config, 2, storage, "t", tmp_path / "out", cut_first)
    low, high = (0.001, 0.9 * rates[0]) if rates[0] > 0.002 else (1.1 * rates[0], 0.01)  # the cut value left out
    space = SPACE[0].replace("low: 0.001, high: 0.01", f"low: {low}, high: {high}")
    result = sweep_module.run_sweep(load_config(None, SMALL + [space, SPACE[1]]), 2, storage, "t", tmp_path / "out",
                                    cut_first)
    assert all(low <= rate <= high for rate in rates[1:]) and len(rates) == 3
    assert result.table.filter(pl.col("state") == "COMPLETE").height == 2


def test_other_categorical_choices_for_a_stored_study_are_refused_in_words(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep_module.run_sweep(load_config(None, SMALL + SPACE), 1, storage, "t", tmp_path / "out",
                           lambda config, trial_dir, report: 0.1)
    narrowed = load_config(None, SMALL + [SPACE[0].replace("[mean, recency]", "[recency]"), SPACE[1]])
    with pytest.raises(ConfigError, match=r"sweep.space.model.history.pooling: study 't' draws it from "
                                          r"\['mean', 'recency'\].*start a new study"):
        sweep_module.open_study(narrowed, storage, "t", tmp_path / "out")
