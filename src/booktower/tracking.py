"""Experiment tracking through MLflow: off by default; a local SQLite store when on.

The trainer's whole API:
    tracker = Tracker.start(config, run_dir, resume)   # no-op object when config.tracking.mlflow is false
    tracker.log_epoch(row)                     # one epochs.csv row: numeric values become step metrics
    tracker.log_refit_epoch(row)               # one refit epoch's row, as refit_* metrics
    tracker.finish(metrics, run_dir)           # final metrics, then report/metrics/model files as artefacts
    tracker.fail()                             # the run ended in an error or a signal

Tracking mirrors a run; it never costs one. A local store that cannot be written is refused before training
(MLflow itself would retry for minutes); once training has started, a tracking failure is a warning and the run's
own files stand. The MLflow run id is kept in RUN/mlflow.json with the store's absolute URI, so `--resume`
continues the same MLflow run, from any folder: a relative local store (the default `sqlite:///mlruns.db`) in a
resumed run's own config is read against the folder training started in (`anchor_tracking_paths`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from booktower.config import BooktowerConfig
from booktower.utils.atomic import atomic_write_json
from booktower.utils.nested import flatten
from booktower.utils.runinfo import working_directory

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


RUN_FILE = "mlflow.json"


def _local_folder(uri: str) -> Path | None:
    """The folder a local store or artefact root writes into (sqlite:///x.db, file:///dir, a plain path)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent
    if uri.startswith("file:"):  # file:///abs, file:./rel
        return Path(uri.removeprefix("file:").removeprefix("//"))
    return None if "://" in uri else Path(uri)


def absolute_uri(uri: str, base: Path) -> str:
    """`uri` with a relative local path (sqlite:///x.db, a plain folder) made absolute against `base`; other
    URIs (absolute, remote, in memory) unchanged."""
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return uri if path == ":memory:" or Path(path).is_absolute() else f"sqlite:///{base / path}"
    return uri if "://" in uri or Path(uri).is_absolute() else str(base / uri)


def anchor_tracking_paths(config: BooktowerConfig, base: Path) -> BooktowerConfig:
    """`config` with a relative local tracking store and artefact root made absolute against `base`, the folder
    they were written for (as training.run.anchor_data_paths does the data paths): a run resumed from another
    folder then continues its MLflow run instead of starting a new store there."""
    tracking = config.tracking
    update = {key: anchored for key in ("mlflow_uri", "artifact_root")
              if (uri := getattr(tracking, key)) and (anchored := absolute_uri(uri, base)) != uri}
    if not update:
        return config
    return config.model_copy(update={"tracking": tracking.model_copy(update=update)})


def check_local_store(config: BooktowerConfig) -> None:
    """Refuse, before any training, a local tracking store or artefact root nobody can write, and a store kind
    MLflow will not open."""
    import tempfile

    from booktower.config import ConfigError

    for key, uri in (("tracking.mlflow_uri", config.tracking.mlflow_uri), ("tracking.artifact_root", artifact_root(config))):
        folder = _local_folder(uri) if uri else None
        if folder is None:
            continue
        existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
        try:
            if existing is None or not existing.is_dir():
                raise OSError(f"{existing} is not a folder")
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise ConfigError(f"{key} = {uri}: {folder} cannot be written ({exc.strerror or exc}). Fix: point it at "
                              "a folder you can write, or set tracking.mlflow=false") from None
    _check_store_kind(config.tracking.mlflow_uri)


def _check_store_kind(uri: str) -> None:
    """Refuse a store MLflow will not open: recent MLflow keeps its folder store (./mlruns, file:) read-only
    ("maintenance mode"), and says so only once the run is under way."""
    from booktower.config import ConfigError

    if uri.startswith("sqlite:") or _local_folder(uri) is None:
        return
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri)
    except Exception as exc:  # noqa: BLE001 - MlflowException and whatever a store's constructor raises
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise ConfigError(f"tracking.mlflow_uri = {uri}: MLflow cannot track in this folder store ({detail}). "
                          f"Fix: a SQLite store, e.g. tracking.mlflow_uri=sqlite:///{_local_folder(uri) / 'mlflow.db'}"
                          ) from None


def _reopened_run(client: Any, run_dir: Path, uri: str) -> str | None:
    """The MLflow run of an interrupted run directory, set running again; None when there is none to continue.
    `uri`: the store's absolute URI."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    # a relative URI is an older run's, written in the folder training started in
    saved_uri = absolute_uri(str(saved.get("tracking_uri", "")), working_directory(run_dir))
    if saved_uri != uri:
        log.warning("MLflow run %s was tracked at %s, and this config tracks at %s: starting a new run there "
                    "(resume with tracking.mlflow_uri=%s to continue it)", saved.get("run_id"), saved_uri, uri,
                    saved_uri)
        return None
    try:
        client.update_run(saved["run_id"], status="RUNNING")
    except Exception as exc:  # noqa: BLE001 - deleted in the store, or another store: start a new run
        log.warning("MLflow run %s cannot be continued (%s): starting a new one", saved.get("run_id"), exc)
        return None
    return str(saved["run_id"])


def _warn_other_experiment(client: Any, run_id: str, experiment: str) -> None:
    """A continued MLflow run stays in the experiment it started in: say so when the config now names another."""
    try:
        started_in = client.get_experiment(client.get_run(run_id).info.experiment_id).name
    except Exception:  # noqa: BLE001 - only a courtesy; the run itself continues
        return
    if started_in != experiment:
        log.warning("tracking.experiment is %r now, but MLflow run %s continues in the experiment it started in, %r "
                    "(a run cannot move; train a new run to track it under %r)", experiment, run_id, started_in,
                    experiment)


class Tracker:
    """One MLflow run, or nothing when tracking is off (every method is then a no-op)."""

    def __init__(self, client: Any = None, run_id: str | None = None) -> None:
        self.client, self.run_id = client, run_id
        self._step = 0

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @classmethod
    def start(cls, config: BooktowerConfig, run_dir: Path | str, resume: bool = False) -> Tracker:
        if not config.tracking.mlflow:
            return cls()
        from mlflow.tracking import MlflowClient

        # absolute from here on: the store stays the same files whatever folder a --resume runs in
        config = anchor_tracking_paths(config, Path.cwd())
        check_local_store(config)
        run_dir, uri = Path(run_dir), config.tracking.mlflow_uri
        client = MlflowClient(tracking_uri=uri)
        run_id = _reopened_run(client, run_dir, uri) if resume else None
        if run_id is not None:
            log.info("MLflow run %s continued at %s", run_id, uri)
            _warn_other_experiment(client, run_id, config.tracking.experiment)
            return cls(client, run_id)
        experiment = client.get_experiment_by_name(config.tracking.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else client.create_experiment(config.tracking.experiment,
                                                       artifact_location=artifact_root(config)))
        run = client.create_run(experiment_id, run_name=run_dir.name, tags={"run_dir": str(run_dir.resolve())})
        tracker = cls(client, run.info.run_id)
        atomic_write_json(run_dir / RUN_FILE, {"tracking_uri": uri, "run_id": tracker.run_id})
        params = {k: str(v)[:500] for k, v in flatten(config.model_dump(mode="json")).items()}
        items = sorted(params.items())
        for start in range(0, len(items), 100):  # MLflow caps one batch at 100 params
            from mlflow.entities import Param

            client.log_batch(tracker.run_id, params=[Param(k, v) for k, v in items[start : start + 100]])
        log.info("MLflow run %s at %s", tracker.run_id, uri)
        return tracker

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        step = int(row.get("epoch", self._step))
        for key, value in _numeric(row).items():
            self.client.log_metric(self.run_id, key, value, step=step)
        self._step = step + 1

    def log_refit_epoch(self, row: dict[str, Any]) -> None:
        """One refit epoch's row (training.refit_on_validation), as `refit_`-prefixed metrics at the refit's own
        epoch: under the selection run's names they would overwrite its points at the same steps."""
        if not self.enabled:
            return
        step = int(row.get("epoch", 0))
        for key, value in _numeric(row).items():
            if key != "epoch":
                self.client.log_metric(self.run_id, f"refit_{key}", value, step=step)

    def finish(self, metrics: dict[str, dict[str, float]], run_dir: Path | str) -> None:
        """Final metrics and artefacts, then the run closed as FINISHED; a failure here is only a warning."""
        if not self.enabled:
            return
        try:
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
        except Exception as exc:  # noqa: BLE001 - the run's files are written; tracking only mirrors them
            log.warning("MLflow run %s: final metrics or artefacts not logged (%s); the run's files in %s are "
                        "complete", self.run_id, exc, run_dir)
        self._terminate("FINISHED")

    def fail(self) -> None:
        """Close the MLflow run as FAILED (an error, Ctrl-C or SIGTERM ended training)."""
        if self.enabled:
            self._terminate("FAILED")

    def _terminate(self, status: str) -> None:
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
            log.warning("MLflow run %s could not be closed as %s: %s", self.run_id, status, exc)
