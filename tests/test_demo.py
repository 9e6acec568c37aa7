"""The demo: the whole pipeline on synthetic data, and its settings kept equal to configs/demo.yaml."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from booktower.config import load_config
from booktower.demo import demo_config

REPO = Path(__file__).resolve().parents[1]


def _default(command, option: str):
    """A typer command's default for `option` (its parameter default is the typer.Option)."""
    return inspect.signature(command).parameters[option].default.default


def test_demo_yaml_matches_the_demo_command(tmp_path):
    """`data synth` then `train --config configs/demo.yaml` trains what `booktower demo` does, seed included."""
    from booktower.cli.data_cmds import synth_command
    from booktower.cli.demo_cmd import demo_command

    from_yaml = load_config(REPO / "configs" / "demo.yaml", [
        f"data.source.interactions={tmp_path / 'data' / 'users.csv'}",
        f"data.source.items={tmp_path / 'data' / 'books.csv'}",
    ])
    seed = _default(demo_command, "seed")  # run_demo trains with it: demo_config(..., [f"seed={seed}"])
    assert from_yaml == demo_config(tmp_path, [f"seed={seed}"])
    assert _default(synth_command, "seed") == seed, "`data synth` writes the demo's data"


@pytest.mark.slow
def test_demo_end_to_end_beats_popularity_widely(tmp_path):
    from booktower.data.synth import SynthConfig
    from booktower.demo import run_demo
    from booktower.serving.bundle import verify_bundle

    result = run_demo(tmp_path, seed=3, synth=SynthConfig(n_users=700, n_books=500),
                      extra=["training.num_threads=1"])
    model, pop = result.metrics["test"], result.baselines["pop"]["test"]
    # planted tastes, authors and series: a model that learned them is far above popularity
    assert model["NDCG@20"] > 2 * pop["NDCG@20"], (model["NDCG@20"], pop["NDCG@20"])
    assert model["HR@20"] > pop["HR@20"] + 0.05
    assert result.report.exists()
    assert (result.run_dir / "metrics.json").exists() and (result.run_dir / "epochs.csv").exists()
    verify_bundle(result.bundle_dir)  # the exported bundle passes its own hash checks
    assert len(result.recommendations) == 5 and all(r["title"] for r in result.recommendations)


def test_the_demo_says_when_its_baselines_saw_more_than_the_model(tmp_path):
    from booktower.data.synth import SynthConfig
    from booktower.demo import run_demo

    small = SynthConfig(n_users=150, n_books=120)
    plain = run_demo(tmp_path / "plain", seed=3, synth=small, extra=["training.num_threads=1", "training.epochs=1"])
    assert "train only" in plain.protocol_note()
    assert plain.model_refit == load_config(REPO / "configs" / "demo.yaml", []).training.refit_on_validation
    refit = run_demo(tmp_path / "refit", seed=3, synth=small,
                     extra=["training.num_threads=1", "training.epochs=1", "training.refit_on_validation=true"])
    assert refit.protocol_note() is None
