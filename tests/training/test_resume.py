"""`booktower train` from files: load_run, and a real SIGKILL mid-run then --resume ends like the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from booktower.data.toy import checkerboard_raw
from booktower.training.run import load_run
from booktower.training.scoring import score_fn_for

BIN = Path(sys.executable).parent / "booktower"


def write_dataset(folder: Path, n: int) -> Path:
    """The checkerboard as CSV files plus a config that reads them."""
    raw = checkerboard_raw(n)
    folder.mkdir(parents=True, exist_ok=True)
    raw.interactions.write_csv(folder / "interactions.csv")
    catalogue = raw.catalogue.rename({"num:price": "price"}).with_columns(
        categories=raw.catalogue["categories"].list.join(" > "))
    catalogue.write_csv(folder / "items.csv")
    config = folder / "config.yaml"
    config.write_text(f"""
data:
  cache_dir: {folder / 'cache'}
  min_user_interactions: 1
  min_item_interactions: 1
  source: {{format: csv, interactions: {folder / 'interactions.csv'}, items: {folder / 'items.csv'}}}
  columns: {{user: user_id, item: item_id, timestamp: timestamp, timestamp_unit: s, order: order,
             item_numeric: [price], item_count_columns: [], item_nonnegative: [price]}}
  features: {{text_buckets: 256}}
training:
  progress: false
  num_threads: 1
  batch_size: 32
  epochs: 5
  negatives: {{num_negatives: 16}}
  early_stopping: {{patience: 0}}
""")
    return config


def train(config: Path, run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(BIN), "train", "--config", str(config), "--output-dir", str(run), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]


def test_train_cli_then_load_run_scores_like_the_saved_metrics(tmp_path):
    config = write_dataset(tmp_path / "data", 20)
    _finish(train(config, tmp_path / "run", "--set", "training.epochs=1"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    trained = load_run(tmp_path / "run")
    from booktower.evaluation import evaluate_split

    again = evaluate_split(score_fn_for(trained.model, trained.data, "test"), trained.data, "test", [10, 20, 50])
    assert again.metrics["NDCG@20"] == pytest.approx(metrics["test"]["NDCG@20"], abs=1e-6)


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_the_uninterrupted_run(tmp_path):
    config = write_dataset(tmp_path / "data", 50)
    _finish(train(config, tmp_path / "full"))
    proc = train(config, tmp_path / "killed")
    epochs = tmp_path / "killed" / "epochs.csv"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if epochs.exists() and len(epochs.read_text().strip().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make the epochs longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    _finish(train(config, tmp_path / "killed", "--resume"))
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed == full
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.isfinite(full["test"]["NDCG@20"])


def test_a_changed_config_and_damaged_weights_are_refused_naming_the_fix(tmp_path):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    _finish(train(config, run, "--set", "training.epochs=1"))

    def resume(*extra: str):
        return CliRunner().invoke(app, ["train", "--config", str(config), "--output-dir", str(run), "--resume", *extra])

    changed = resume("--set", "training.epochs=2")
    message = "".join(changed.output.split())  # the console wraps long lines anywhere
    assert changed.exit_code == 2 and "Traceback" not in changed.output
    assert "training.epochs:1->2" in message and "new--output-dir" in message
    # without --config the run's own config.yaml is read, and display-only keys may change
    shown = CliRunner().invoke(app, ["train", "--output-dir", str(run), "--resume", "--set", "training.progress=true"])
    assert shown.exit_code == 0, shown.output
    (run / "run.json").unlink()  # as if stopped after its last epoch: --resume has the checkpoint to read
    weights = run / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a damaged copy of the run folder
    damaged = resume("--set", "training.epochs=1")
    message = "".join(damaged.output.split())
    assert damaged.exit_code == 2 and "Traceback" not in damaged.output
    assert "cannotbeloaded" in message and "checkpoints/last" in message and "new--output-dir" in message
    model = run / "model" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    rescored = CliRunner().invoke(app, ["evaluate", "--run", str(run)])
    message = "".join(rescored.output.split())
    assert rescored.exit_code == 2 and "Traceback" not in rescored.output
    assert "themodelin" in message and "cannotbeloaded" in message and "traintherunagain" in message


def test_a_run_whose_input_files_changed_is_refused_by_evaluate(tmp_path):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    _finish(train(config, run, "--set", "training.epochs=1"))
    log = tmp_path / "data" / "interactions.csv"
    lines = log.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    new_reader = [("a-new-reader" if name == "user_id" else value) for name, value in zip(header, first)]
    log.write_text("\n".join([*lines, ",".join(new_reader)]) + "\n")  # one more reader than the run knows
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run)])
    message = "".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "interactions.csvchanged(sha256" in message and "--allow-changed-data" in message
    # let through, a new reader still cannot be scored by a model without their row
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run), "--allow-changed-data"])
    message = "".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "theinputfileschangedsincetraining" in message and "vocab/users.parquet" in message
