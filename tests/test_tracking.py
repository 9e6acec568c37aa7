"""A run logged to a temporary SQLite store reads back through MLflow's own client."""

from __future__ import annotations

import json

import pytest

from booktower.config import load_config
from booktower.tracking import Tracker

pytest.importorskip("mlflow")


def test_disabled_tracker_is_a_no_op(tmp_path):
    tracker = Tracker.start(load_config(None), tmp_path)
    assert not tracker.enabled
    tracker.log_epoch({"epoch": 0, "loss": 1.0})
    tracker.finish({"test": {"HR@10": 0.1}}, tmp_path)


def test_logged_run_reads_back(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    config = load_config(None, ["tracking.mlflow=true", f"tracking.mlflow_uri={uri}", "tracking.experiment=t"])
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "report.md").write_text("# report\n")
    (run_dir / "model" / "model.json").write_text("{}")
    (run_dir / "metrics.json").write_text(json.dumps({"test": {"HR@10": 0.25}}))
    tracker = Tracker.start(config, run_dir)
    for epoch, loss in enumerate([1.5, 1.0, 0.75]):
        tracker.log_epoch({"epoch": epoch, "loss": loss, "val_NDCG@10": 0.1 * epoch, "note": "text is skipped"})
    tracker.finish({"validation": {"NDCG@10": 0.2}, "test": {"HR@10": 0.25}}, run_dir)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == str(config.seed)
    assert run.data.params["evaluation.ks"] == "[10, 20, 50]"
    assert run.data.metrics["test.HR_at_10"] == 0.25
    history = client.get_metric_history(tracker.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.5), (1, 1.0), (2, 0.75)]
    artefacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"report.md", "metrics.json", "model"} <= artefacts
    assert [a.path for a in client.list_artifacts(tracker.run_id, "model")] == ["model/model.json"]
    assert (tmp_path / "mlartifacts").is_dir()  # beside the SQLite file, not ./mlruns in the working directory


def test_train_run_logs_epochs_metrics_and_report(tmp_path):
    from mlflow.tracking import MlflowClient

    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import train_run

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    config = load_config(None, [
        "tracking.mlflow=true", f"tracking.mlflow_uri={uri}", "tracking.experiment=train", "training.epochs=2",
        "training.progress=false", "training.num_threads=1", "training.batch_size=128",
        "training.negatives.num_negatives=16", "data.features.text_buckets=256",
    ])
    train_run(config, tmp_path / "run", data=random_prepared(n_users=60, n_items=40, per_user=8))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("train")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "loss_total")) == 2  # one point per epoch
    assert "test.NDCG_at_20" in run.data.metrics
    artefacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "metrics.json"} <= artefacts


def test_the_refit_epochs_are_logged_under_their_own_names(tmp_path):
    """training.refit_on_validation: the refit's losses, at the refit's epochs, beside the selection run's."""
    from mlflow.tracking import MlflowClient

    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import train_run

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    config = load_config(None, [
        "tracking.mlflow=true", f"tracking.mlflow_uri={uri}", "tracking.experiment=refit", "training.epochs=2",
        "training.early_stopping.patience=10", "training.refit_on_validation=true", "training.progress=false",
        "training.num_threads=1", "training.batch_size=128", "training.negatives.num_negatives=16",
        "data.features.text_buckets=256",
    ])
    result = train_run(config, tmp_path / "run", data=random_prepared(n_users=60, n_items=40, per_user=8))
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("refit").experiment_id])
    refit = client.get_metric_history(run.info.run_id, "refit_loss_total")
    assert [m.step for m in refit] == list(range(1, result.fit.best_epoch + 1))
    assert len(client.get_metric_history(run.info.run_id, "loss_total")) == 2  # the selection run's, untouched
    assert "refit_epoch" not in run.data.metrics and "refit_val_NDCG_at_20" not in run.data.metrics


def _config(tmp_path, *extra):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    return load_config(None, ["tracking.mlflow=true", f"tracking.mlflow_uri={uri}", "tracking.experiment=t", *extra])


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("key", ["tracking.mlflow_uri=sqlite:////proc/booktower/mlruns.db",
                                 "tracking.artifact_root=file:///proc/booktower-artefacts"])
def test_a_store_nobody_can_write_is_refused_before_training(tmp_path, key):
    import time

    from booktower.config import ConfigError

    config = _config(tmp_path, key)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot be written"):
        Tracker.start(config, tmp_path / "run")
    assert time.perf_counter() - start < 10  # not MLflow's minutes of retries


def test_a_resumed_run_continues_its_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    config = _config(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = Tracker.start(config, run_dir)
    first.log_epoch({"epoch": 0, "loss": 1.0})
    first.fail()  # Ctrl-C
    client = MlflowClient(tracking_uri=config.tracking.mlflow_uri)
    assert client.get_run(first.run_id).info.status == "FAILED"
    again = Tracker.start(config, run_dir, resume=True)
    assert again.run_id == first.run_id
    again.log_epoch({"epoch": 1, "loss": 0.5})
    again.finish({"test": {"HR@10": 0.3}}, run_dir)
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first.run_id, "loss")] == [0, 1]
    assert Tracker.start(config, run_dir).run_id != first.run_id  # a fresh (not resumed) run gets its own


def test_failing_artefact_uploads_leave_the_run_closed_and_only_warn(tmp_path, caplog, monkeypatch):
    import logging

    from mlflow.tracking import MlflowClient

    config = _config(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "report.md").write_text("# report\n")
    tracker = Tracker.start(config, run_dir)

    def refuse(*args, **kwargs):
        raise OSError("artefact store is read-only")

    monkeypatch.setattr(tracker.client, "log_artifact", refuse)
    with caplog.at_level(logging.WARNING):
        tracker.finish({"test": {"HR@10": 0.3}}, run_dir)
    assert "artefacts not logged" in caplog.text
    assert MlflowClient(tracking_uri=config.tracking.mlflow_uri).get_run(tracker.run_id).info.status == "FINISHED"


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_refused_store_leaves_no_half_written_run(tmp_path):
    from booktower.config import ConfigError
    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import train_run

    config = _config(tmp_path, "tracking.mlflow_uri=sqlite:////proc/booktower/mlruns.db")
    with pytest.raises(ConfigError, match="cannot be written"):
        train_run(config, tmp_path / "run", data=random_prepared(n_users=20, n_items=15, per_user=5))
    assert not (tmp_path / "run").exists()


def test_an_interrupted_run_continues_its_mlflow_run_from_another_folder(tmp_path, monkeypatch):
    """The default store (sqlite:///mlruns.db) is relative: a `--resume` from another folder reads it against the
    folder training started in, as the run's data paths are, and makes no store or artefacts where it is."""
    import os
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    import booktower.training.pipeline as pipeline
    from booktower.cli.app import app
    from tests.training.test_resume import write_dataset

    project, elsewhere, run = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "run"
    config = write_dataset(project / "data", 12)
    elsewhere.mkdir()
    monkeypatch.chdir(project)

    def stopped_after_fit(*args, **kwargs):
        raise KeyboardInterrupt  # a Ctrl-C after the last epoch: the MLflow run is closed as FAILED

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "save_model", stopped_after_fit)
        interrupted = CliRunner().invoke(app, ["train", "--config", str(config), "-o", str(run), "--set",
                                               "training.epochs=2", "--set", "tracking.mlflow=true"])
    assert interrupted.exit_code == 130, interrupted.output
    first = json.loads((run / "mlflow.json").read_text())["run_id"]

    # another process, as a user's: MLflow keeps one store per URI in a process, which would hide the bug
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}  # wide: a log line is not wrapped
    resumed = subprocess.run([sys.executable, "-m", "booktower", "train", "-o", str(run), "--resume"],
                             cwd=elsewhere, capture_output=True, text=True, env=env, timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "cannot be continued" not in resumed.stdout + resumed.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == [], "no mlruns.db or mlartifacts/ in this folder"
    assert json.loads((run / "mlflow.json").read_text())["run_id"] == first
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns.db'}")
    assert client.get_run(first).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first, "loss_total")] == [1, 2]
    assert "report.md" in {a.path for a in client.list_artifacts(first)}
    assert (project / "mlartifacts").is_dir()


def test_a_resume_tracked_at_another_store_says_so(tmp_path, caplog):
    import logging

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = Tracker.start(_config(tmp_path), run_dir)
    first.fail()
    other = _config(tmp_path, f"tracking.mlflow_uri=sqlite:///{tmp_path / 'other.db'}")
    with caplog.at_level(logging.WARNING):
        again = Tracker.start(other, run_dir, resume=True)
    assert again.run_id != first.run_id
    assert f"MLflow run {first.run_id} was tracked at sqlite:///{tmp_path / 'mlruns.db'}" in caplog.text


def test_relative_local_stores_are_anchored_and_others_kept(tmp_path):
    from booktower.tracking import absolute_uri, anchor_tracking_paths

    assert absolute_uri("sqlite:///mlruns.db", tmp_path) == f"sqlite:///{tmp_path}/mlruns.db"
    assert absolute_uri("sqlite:////abs/mlruns.db", tmp_path) == "sqlite:////abs/mlruns.db"
    assert absolute_uri("sqlite:///:memory:", tmp_path) == "sqlite:///:memory:"
    assert absolute_uri("http://tracking:5000", tmp_path) == "http://tracking:5000"
    assert absolute_uri("artefacts", tmp_path) == str(tmp_path / "artefacts")
    config = load_config(None, ["tracking.artifact_root=artefacts"])
    anchored = anchor_tracking_paths(config, tmp_path).tracking
    assert (anchored.mlflow_uri, anchored.artifact_root) == (f"sqlite:///{tmp_path}/mlruns.db",
                                                             str(tmp_path / "artefacts"))


def _mlflow_refuses_folder_stores(folder) -> bool:
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=str(folder))
    except Exception:  # noqa: BLE001 - what recent MLflow raises for its read-only folder store
        return True
    return False


def test_a_folder_store_mlflow_will_not_write_is_refused_before_anything_runs(tmp_path):
    """Recent MLflow keeps its folder store read-only and said so only after data preparation, in a traceback."""
    from booktower.config import ConfigError
    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import train_run

    if not _mlflow_refuses_folder_stores(tmp_path / "probe"):
        pytest.skip("this MLflow still writes folder stores")
    for uri in (tmp_path / "mlstore", f"file://{tmp_path / 'mlstore'}"):
        config = _config(tmp_path, f"tracking.mlflow_uri={uri}")
        with pytest.raises(ConfigError, match=r"cannot track in this folder store .*Fix: a SQLite store, e\.g\. "
                                              rf"tracking\.mlflow_uri=sqlite:///{tmp_path}/mlstore/mlflow\.db"):
            train_run(config, tmp_path / "run", data=random_prepared(n_users=20, n_items=15, per_user=5))
        assert not (tmp_path / "run").exists()


def test_a_resume_naming_another_experiment_says_the_run_stays_where_it_started(tmp_path, caplog):
    import logging

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = Tracker.start(_config(tmp_path, "tracking.experiment=qa3"), run_dir)
    first.fail()
    with caplog.at_level(logging.WARNING, logger="booktower"):
        again = Tracker.start(_config(tmp_path, "tracking.experiment=qa4"), run_dir, resume=True)
    assert again.run_id == first.run_id
    assert "tracking.experiment is 'qa4' now, but MLflow run" in caplog.text and "started in, 'qa3'" in caplog.text
