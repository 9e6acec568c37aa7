"""The main job on the embedded default: synthetic data -> prepare -> train -> baselines -> report -> bundle.

`configs/demo.yaml` holds the same settings for use with the individual commands; a test keeps the two equal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from booktower.config import BooktowerConfig, load_config

log = logging.getLogger(__name__)

DEMO_SETTINGS: list[str] = [
    "training.epochs=15",
    "training.early_stopping.patience=3",
    "training.optimizer.sparse_lr=0.05",
    "model.history.pooling=recency",
    "evaluation.bootstrap_samples=200",
]
"""Overrides on top of the defaults (the design note's Amazon 2023 Books format) that make the demo quick."""

DEMO_BASELINES = ["pop", "itemknn", "ease"]


@dataclass
class DemoResult:
    run_dir: Path
    bundle_dir: Path
    report: Path
    metrics: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, dict[str, float]]]
    reader: str
    recommendations: list[dict[str, Any]]
    seconds: float
    model_refit: bool
    """Whether the two-tower's test numbers come from a refit on train + validation, as the baselines' do."""

    def protocol_note(self) -> str | None:
        """What a reader of the test table must know when the model saw less than the baselines."""
        if self.model_refit:
            return None
        return ("the two-tower was trained on train only, while the baselines' test rows were fitted on train + "
                "validation (each reader's last read before the test included): the comparison leans to the "
                "baselines; training.refit_on_validation=true refits the model as they are fitted")


def demo_config(output_dir: Path, extra: list[str] | None = None) -> BooktowerConfig:
    data_dir = output_dir / "data"
    return load_config(None, [
        f"data.source.interactions={data_dir / 'users.csv'}",
        f"data.source.items={data_dir / 'books.csv'}",
        "data.source.fallback_interactions=null",
        "data.source.fallback_items=null",
        *DEMO_SETTINGS,
        *(extra or []),
    ])


def run_demo(output_dir: Path, seed: int = 0, extra: list[str] | None = None, synth: Any = None) -> DemoResult:
    """Run the whole demo; `synth` (a SynthConfig) shrinks or grows the synthetic data."""
    from booktower.data.synth import SynthConfig, write_synthetic
    from booktower.evaluation.baselines import run_baselines
    from booktower.evaluation.report import write_report
    from booktower.serving.export import export_run
    from booktower.serving.recommend import recommend_from_bundle
    from booktower.training.pipeline import train_run

    start = time.perf_counter()
    output_dir = Path(output_dir)
    config = demo_config(output_dir, [f"seed={seed}", *(extra or [])])
    log.info("1/5 writing synthetic books and readers to %s", output_dir / "data")
    write_synthetic(output_dir / "data", synth or SynthConfig(), seed)
    run_dir = output_dir / "run"
    log.info("2/5 preparing data and training the two-tower model into %s", run_dir)
    result = train_run(config, run_dir)
    log.info("3/5 fitting baselines %s on the same split (validation: fitted on train; test: on train + "
             "validation)", ", ".join(DEMO_BASELINES))
    baselines = run_baselines(DEMO_BASELINES, config.baselines, result.data, config.evaluation.ks, config.seed,
                              run_dir / "baselines", chunk=config.evaluation.user_chunk,
                              progress=config.training.progress)
    log.info("4/5 rendering the report")
    report = write_report(run_dir)
    log.info("5/5 exporting the serving bundle")
    bundle_dir = output_dir / "bundle"
    export_run(run_dir, bundle_dir)
    reader = result.data.users.decode([int(result.data.split.test.user[0])])[0]
    rows = recommend_from_bundle(bundle_dir, user=reader, k=5)
    return DemoResult(run_dir, bundle_dir, report, result.metrics, baselines, reader, rows, time.perf_counter() - start,
                      model_refit=config.training.refit_on_validation)
