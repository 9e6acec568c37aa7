"""`booktower sweep`: what would mix setups is refused before the data is prepared, and SIGTERM
stops a sweep as Ctrl-C does."""

from __future__ import annotations

import importlib
import os
import signal

import pytest

optuna = pytest.importorskip("optuna")

SPACE = "sweep.space={'training.optimizer.lr': {type: float, low: 0.001, high: 0.01, log: true}}"
SMALL = ["training.early_stopping.metric=HR@50", "training.epochs=1", "training.progress=false",
         "data.cache_dir=null", "sweep.pruner=none"]


def sweep_args(tmp_path, *overrides: str, study: str = "t", out: str = "out") -> list[str]:
    sets = [arg for value in (*SMALL, SPACE, *overrides) for arg in ("--set", value)]
    return ["sweep", *sets, "--trials", "1", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study", study,
            "-o", str(tmp_path / out)]


@pytest.fixture
def no_prepare(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("prepare() ran before the sweep was refused")

    monkeypatch.setattr(importlib.import_module("booktower.data.prepare"), "prepare", refuse)


@pytest.fixture
def instant(monkeypatch):
    """Tiny data and trials that do not train: what is under test is the command, not the model."""
    from booktower.data.toy import random_prepared
    from booktower.training import sweep as sweep_module

    monkeypatch.setattr(importlib.import_module("booktower.data.prepare"), "prepare",
                        lambda config: (random_prepared(n_users=20, n_items=10, per_user=4), None))

    def train(config, trial_dir, report):
        trial_dir.mkdir(parents=True)  # as a trained trial leaves it
        return 0.5

    monkeypatch.setattr(sweep_module, "validation_trial", lambda data: train)


def test_a_data_key_in_the_space_is_refused_before_the_data_is_prepared(cli, tmp_path, no_prepare):
    space = "sweep.space={'data.min_item_interactions': {type: categorical, choices: [5, 40]}}"
    outcome = cli(*sweep_args(tmp_path, space))
    assert outcome.refused("sweep.space key 'data.min_item_interactions' cannot be searched",
                           "the data is prepared once per sweep", "Fix: run one sweep per data setting")


def test_step_with_log_is_refused_in_one_line(cli, tmp_path, no_prepare):
    space = "sweep.space={'training.optimizer.lr': {type: float, low: 0.001, high: 0.1, log: true, step: 0.01}}"
    outcome = cli(*sweep_args(tmp_path, space))
    assert outcome.code == 2 and "Traceback" not in outcome.output
    assert outcome.says("sweep.space.training.optimizer.lr:", "`step` or `log: true`, not both")


def test_another_base_config_for_a_stored_study_is_refused_before_the_data_is_prepared(cli, tmp_path, instant,
                                                                                     monkeypatch):
    assert cli(*sweep_args(tmp_path)).code == 0
    monkeypatch.setattr(importlib.import_module("booktower.data.prepare"), "prepare", None)  # must not run
    outcome = cli(*sweep_args(tmp_path, "training.epochs=2", out="other"))
    assert outcome.refused("study 't' in this --storage was started with another base config",
                           "training.epochs: 1 -> 2", "Fix: a new --study name")


def test_an_output_folder_of_another_study_is_refused_before_the_data_is_prepared(cli, tmp_path, instant,
                                                                                 monkeypatch):
    assert cli(*sweep_args(tmp_path, study="a")).code == 0
    monkeypatch.setattr(importlib.import_module("booktower.data.prepare"), "prepare", None)  # must not run
    outcome = cli(*sweep_args(tmp_path, study="b"))
    assert outcome.refused("holds the trials of another study ('a'", "Fix: a new --output-dir")


def test_sigterm_marks_the_running_trial_failed_and_says_how_to_continue(cli, tmp_path, instant, monkeypatch):
    """As `booktower` runs it: main() turns SIGTERM into SystemExit(143)."""
    from booktower.cli.app import exit_on_sigterm
    from booktower.training import sweep as sweep_module

    def terminated(config, trial_dir, report):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the trial")

    monkeypatch.setattr(sweep_module, "validation_trial", lambda data: terminated)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        exit_on_sigterm()
        outcome = cli(*sweep_args(tmp_path))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert outcome.code == 143
    assert outcome.says("interrupted: the finished trials are in", "the same command continues the study")
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"]


def test_the_best_value_says_it_was_read_on_a_subset_of_validation_readers(cli, tmp_path, instant):
    everyone = cli(*sweep_args(tmp_path))
    assert everyone.code == 0 and "validation readers" not in everyone.output
    subset = cli(*sweep_args(tmp_path, "training.max_valid_users=5", study="s", out="s"))
    assert subset.code == 0, subset.output
    assert "(on 5 of the 20 validation readers: training.max_valid_users)" in " ".join(subset.output.split())
