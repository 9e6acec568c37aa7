"""Experiment tracking through MLflow: off by default; a local SQLite store when on.

The trainer's whole API:
    tracker = Tracker.start(config, run_dir)   # no-op object when config.tracking.mlflow is false
    tracker.log_epoch(row)                     # one epochs.csv row: numeric values become step metrics
    tracker.finish(metrics, run_dir)           # final metrics, then report/metrics/model files as artefacts
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from booktower.config import BooktowerConfig
from booktower.utils.nested import flatten

log = logging.getLogger(__name__)

_ARTEFACTS = ("report.md", "metrics.json", "config.yaml", "run.json", "epochs.csv", "diagnostics.json",
              "audit.json", "data_summary.json")
_ARTEFACT_DIRS = ("plots", "model")


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            continue
        out[_metric_name(key)] = float(value)
    return out


def _metric_name(key: str) -> str:
    # MLflow metric names allow alphanumerics, _ - . / and spaces; '@' is not among them
    return key.replace("@", "_at_")


def artifact_root(config: BooktowerConfig) -> str | None:
    """Explicit root, else `mlartifacts/` beside a SQLite file (MLflow's own default is ./mlruns in the cwd)."""
    if config.tracking.artifact_root:
        return config.tracking.artifact_root
    uri = config.tracking.mlflow_uri
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


class Tracker:
    """One MLflow run, or nothing when tracking is off (every method is then a no-op)."""

    def __init__(self, client: Any = None, run_id: str | None = None) -> None:
        self.client, self.run_id = client, run_id
        self._step = 0

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @classmethod
    def start(cls, config: BooktowerConfig, run_dir: Path | str) -> Tracker:
        if not config.tracking.mlflow:
            return cls()
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=config.tracking.mlflow_uri)
        experiment = client.get_experiment_by_name(config.tracking.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else client.create_experiment(config.tracking.experiment,
                                                       artifact_location=artifact_root(config)))
        run = client.create_run(experiment_id, run_name=Path(run_dir).name, tags={"run_dir": str(Path(run_dir).resolve())})
        tracker = cls(client, run.info.run_id)
        params = {k: str(v)[:500] for k, v in flatten(config.model_dump(mode="json")).items()}
        items = sorted(params.items())
        for start in range(0, len(items), 100):  # MLflow caps one batch at 100 params
            from mlflow.entities import Param

            client.log_batch(tracker.run_id, params=[Param(k, v) for k, v in items[start : start + 100]])
        log.info("MLflow run %s at %s", tracker.run_id, config.tracking.mlflow_uri)
        return tracker

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        step = int(row.get("epoch", self._step))
        for key, value in _numeric(row).items():
            self.client.log_metric(self.run_id, key, value, step=step)
        self._step = step + 1

    def finish(self, metrics: dict[str, dict[str, float]], run_dir: Path | str, status: str = "FINISHED") -> None:
        if not self.enabled:
            return
        for part, values in metrics.items():
            if isinstance(values, dict):
                for key, value in _numeric(values).items():
                    self.client.log_metric(self.run_id, f"{part}.{key}", value)
        run_dir = Path(run_dir)
        for name in _ARTEFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        for name in _ARTEFACT_DIRS:
            if (run_dir / name).is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / name), artifact_path=name)
        self.client.set_terminated(self.run_id, status=status)
