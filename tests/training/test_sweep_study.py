"""A sweep's study: keys no trial reads, a study resumed with another base config, SIGTERM, step with
log, `--trials` across workers, tracking.mlflow, and an output folder shared by two studies."""

from __future__ import annotations

import logging

import pytest

from booktower.config import ConfigError, load_config
from booktower.data.toy import random_prepared
from booktower.training import sweep as sweep_module

optuna = pytest.importorskip("optuna")

SPACE = [
    "sweep.space={'training.optimizer.lr': {type: float, low: 0.001, high: 0.01, log: true}}",
    "sweep.pruner=none",
]
SMALL = ["training.early_stopping.metric=HR@50", "training.epochs=2", "training.batch_size=256",
         "training.progress=false", "data.cache_dir=null", "model.item.feature_hidden=[16]",
         "model.user.feature_hidden=[16]", "training.negatives.num_negatives=16"]


def instant(config, trial_dir, report):
    """No training: what is under test is the study's bookkeeping. The value depends on the drawn lr only."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    return config.training.optimizer.lr


def never(*args):
    raise AssertionError("no trial may run")


def states(storage: str, study: str = "t") -> list[str]:
    return [t.state.name for t in optuna.load_study(study_name=study, storage=storage).trials]


# A searched key no trial reads is refused before the data is prepared.

@pytest.mark.parametrize(("key", "says"), [
    ("data.min_item_interactions", "the data is prepared once per sweep"),
    ("data.split.kind", "Fix: run one sweep per data setting"),
    ("serving.max_history", "a trial never reads it"),
    ("evaluation.bootstrap_samples", "Fix: set it in the base config"),
    ("training.refit_on_validation", "a trial never reads it"),
])
def test_a_key_read_once_per_sweep_cannot_be_searched(tmp_path, key, says):
    space = f"sweep.space={{'{key}': {{type: categorical, choices: [5, 40]}}}}"
    config = load_config(None, SMALL + [space])
    with pytest.raises(ConfigError) as err:
        sweep_module.run_sweep(config, 2, f"sqlite:///{tmp_path / 's.db'}", "t", tmp_path / "out", never)
    assert str(err.value).startswith(f"sweep.space key {key!r} cannot be searched") and says in str(err.value)
    assert not (tmp_path / "out" / "best_config.yaml").exists()


def test_keys_every_trial_reads_can_be_searched():
    """The seed seeds each trial's model and training; evaluation.ks decides what each trial reports."""
    space = ("sweep.space={seed: {type: int, low: 1, high: 3}, "
             "'evaluation.ks': {type: categorical, choices: ['[20, 50]']}}")
    sweep_module.check_sweep(load_config(None, SMALL + [space]))


# a study resumed with another base config.

def test_a_study_resumed_with_another_base_config_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sweep_module.run_sweep(load_config(None, SMALL + SPACE), 2, storage, "t", tmp_path / "out", instant)
    edited = load_config(None, SMALL + SPACE + ["training.epochs=3"])
    with pytest.raises(ConfigError) as err:
        sweep_module.run_sweep(edited, 3, storage, "t", tmp_path / "out", never)
    assert "study 't' in this --storage was started with another base config (training.epochs: 2 -> 3)" in str(
        err.value)
    assert "Fix: a new --study name" in str(err.value)
    assert states(storage) == ["COMPLETE", "COMPLETE"]


def test_settings_that_do_not_change_results_may_change_between_runs(tmp_path, monkeypatch):
    """Progress bars, MLflow, threads, the CUDA graph, the cache folder, the sweep's own settings and the searched
    keys' base values; a data path written relative to the current folder or absolute is the same file."""
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = load_config(None, SMALL + SPACE + ["data.source.interactions=data/users.csv"])
    sweep_module.run_sweep(first, 1, storage, "t", tmp_path / "out", instant)
    free = ["training.progress=true", "training.num_threads=1", "data.cache_dir=cache", "sweep.pruner=median",
            "training.cuda_graph=false",
            "training.optimizer.lr=0.5", f"data.source.interactions={tmp_path / 'data' / 'users.csv'}"]
    again = sweep_module.run_sweep(load_config(None, SMALL + SPACE + free), 2, storage, "t", tmp_path / "out",
                                   instant)
    assert again.table.height == 2


def test_a_resumed_study_may_search_another_key(tmp_path):
    """Each trial's config is stored with it, so a key added to (or dropped from) the space mixes nothing."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sweep_module.run_sweep(load_config(None, SMALL + SPACE), 1, storage, "t", tmp_path / "out", instant)
    wider = ["sweep.space={'training.optimizer.lr': {type: float, low: 0.001, high: 0.01, log: true},"
             " 'model.temperature': {type: float, low: 0.05, high: 0.2}}", "sweep.pruner=none"]
    table = sweep_module.run_sweep(load_config(None, SMALL + wider), 2, storage, "t", tmp_path / "out", instant).table
    assert table.height == 2 and table["param:model.temperature"].null_count() == 1


def test_best_config_is_the_config_the_best_trial_trained(tmp_path):
    """Not the latest run's base with the best trial's parameters: a free setting changed since stays as the
    best trial had it."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sweep_module.run_sweep(load_config(None, SMALL + SPACE), 1, storage, "t", tmp_path / "out", instant)

    def worse(config, trial_dir, report):
        return -1.0

    result = sweep_module.run_sweep(load_config(None, SMALL + SPACE + ["training.progress=true"]), 2, storage,
                                    "t", tmp_path / "out", worse)
    assert int(result.table["trial"][0]) == 0
    best = load_config(tmp_path / "out" / "best_config.yaml")
    assert best.training.progress is False
    assert best.training.optimizer.lr == result.best_params["training.optimizer.lr"]


def test_a_study_without_trials_takes_the_new_base(tmp_path):
    """A run refused after the study was created (here by a foreign output folder) leaves an empty study: a
    corrected config may start it."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "out" / "trial_0000").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds trial folders of another sweep"):
        sweep_module.run_sweep(load_config(None, SMALL + SPACE), 1, storage, "t", tmp_path / "out", never)
    corrected = load_config(None, SMALL + SPACE + ["training.epochs=3"])
    assert sweep_module.run_sweep(corrected, 1, storage, "t", tmp_path / "new", instant).table.height == 1


# SIGTERM (SystemExit in the CLI) marks the running trial failed, as Ctrl-C does.

def test_a_trial_stopped_by_system_exit_is_marked_failed_and_rerun(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    config = load_config(None, SMALL + SPACE)

    def stopped(config, trial_dir, report):
        raise SystemExit(143)

    with pytest.raises(SystemExit) as exit_:
        sweep_module.run_sweep(config, 2, storage, "t", tmp_path / "out", stopped)
    assert exit_.value.code == 143
    assert states(storage) == ["FAIL"]
    result = sweep_module.run_sweep(config, 2, storage, "t", tmp_path / "out", instant)
    assert result.table["state"].to_list().count("COMPLETE") == 2


# `--trials N` holds across workers sharing a storage.

def test_trials_counts_what_other_workers_finished_and_are_running(tmp_path):
    """While this worker runs its third trial another one finishes a trial and starts the next: with 5 requested,
    this worker stops after its third (3 + 1 finished + 1 running), instead of running its own 5."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    ran = []

    def with_a_second_worker(config, trial_dir, report):
        ran.append(trial_dir.name)
        if len(ran) == 3:
            other = optuna.load_study(study_name="t", storage=storage)
            other.tell(other.ask(), 0.0)
            other.ask()  # still running when this trial ends
        return 0.1 * len(ran)

    result = sweep_module.run_sweep(load_config(None, SMALL + SPACE), 5, storage, "t", tmp_path / "out",
                                    with_a_second_worker)
    assert len(ran) == 3
    assert sorted(result.table["state"].to_list()) == ["COMPLETE"] * 4 + ["RUNNING"]


def test_a_trial_left_running_by_a_killed_sweep_does_not_count(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    config = load_config(None, SMALL + SPACE)
    sweep_module.run_sweep(config, 1, storage, "t", tmp_path / "out", instant)
    optuna.load_study(study_name="t", storage=storage).ask()  # never told: as after kill -9
    result = sweep_module.run_sweep(config, 4, storage, "t", tmp_path / "out", instant)
    assert result.table["state"].to_list().count("COMPLETE") == 4


# step with log is refused when the config is loaded.

@pytest.mark.parametrize("spec", ["{type: float, low: 0.001, high: 0.1, log: true, step: 0.01}",
                                  "{type: int, low: 1, high: 64, log: true, step: 2}"])
def test_step_with_log_is_refused_at_load(spec):
    with pytest.raises(ConfigError) as err:
        load_config(None, SMALL + [f"sweep.space={{'training.optimizer.lr': {spec}}}"])
    assert "sweep.space.training.optimizer.lr:" in str(err.value) and "`step` or `log: true`, not both" in str(
        err.value)


def test_an_int_log_scale_with_step_one_is_allowed():
    load_config(None, SMALL + ["sweep.space={'training.epochs': {type: int, low: 1, high: 8, log: true, step: 1}}"])


# tracking.mlflow=true is not silently ignored.

def test_tracking_mlflow_warns_once_that_trials_are_not_tracked(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, SMALL + SPACE + ["tracking.mlflow=true"])
    with caplog.at_level(logging.WARNING, logger="booktower.training.sweep"):
        sweep_module.run_sweep(config, 2, f"sqlite:///{tmp_path / 's.db'}", "t", tmp_path / "out", instant)
    warnings = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "a sweep does not log its trials to MLflow" in warnings[0]
    assert not (tmp_path / "mlruns.db").exists()


# an output folder holding another study's trials.

def test_an_output_folder_of_another_study_is_refused_and_the_same_study_resumes(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    config = load_config(None, SMALL + SPACE)
    sweep_module.run_sweep(config, 1, storage, "a", tmp_path / "out", instant)
    written = (tmp_path / "out" / "best_config.yaml").read_text()
    with pytest.raises(ConfigError) as err:
        sweep_module.run_sweep(config, 1, storage, "b", tmp_path / "out", never)
    assert f"--output-dir {tmp_path / 'out'} holds the trials of another study ('a'" in str(err.value)
    assert "Fix: a new --output-dir" in str(err.value)
    assert (tmp_path / "out" / "best_config.yaml").read_text() == written
    assert sweep_module.run_sweep(config, 2, storage, "a", tmp_path / "out", instant).table.height == 2


def test_a_same_named_study_in_another_storage_is_another_study(tmp_path):
    config = load_config(None, SMALL + SPACE)
    sweep_module.run_sweep(config, 1, f"sqlite:///{tmp_path / 'one.db'}", "t", tmp_path / "out", instant)
    with pytest.raises(ConfigError, match="holds the trials of another study"):
        sweep_module.run_sweep(config, 1, f"sqlite:///{tmp_path / 'two.db'}", "t", tmp_path / "out", never)


def test_a_folder_another_study_claimed_but_wrote_no_trial_into_is_free(tmp_path):
    """A sweep refused or stopped before its first trial (e.g. while the data was prepared) leaves study.json
    only: nothing of it would be overwritten."""
    config = load_config(None, SMALL + SPACE)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sweep_module.open_study(config, storage, "a", tmp_path / "out")
    assert sweep_module.run_sweep(config, 1, storage, "b", tmp_path / "out", instant).table.height == 1


def test_the_same_files_named_through_a_symlink_are_the_same_base(tmp_path, monkeypatch):
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    (real / "data" / "log.csv").write_text("parent_asin,userId,timestamp\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.chdir(link)
    space = "sweep.space={model.temperature: {type: float, low: 0.05, high: 0.2}}"
    relative = load_config(None, ["data.source.interactions=data/log.csv", space])
    through_link = load_config(None, [f"data.source.interactions={link / 'data' / 'log.csv'}", space])
    assert sweep_module.base_fingerprint(relative) == sweep_module.base_fingerprint(through_link)
