"""A run's config may name its data relative to the folder training ran in: `export`, `evaluate` and `recommend
--run` then read the same files from any folder (run.json records that folder)."""

from __future__ import annotations

import json

from booktower.config import load_config
from booktower.evaluation.data_check import changed_inputs
from booktower.training.pipeline import train_run
from booktower.training.run import load_run, run_config
from tests.training.test_resume import write_dataset


def test_a_run_with_relative_data_paths_loads_from_another_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    absolute = write_dataset(project / "data", 12)
    relative = project / "relative.yaml"
    relative.write_text(absolute.read_text().replace(f"{project}/", ""))  # data/interactions.csv, ...
    monkeypatch.chdir(project)
    config = load_config(relative, ["training.epochs=1"])
    assert not config.data.source.interactions.is_absolute()
    train_run(config, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["working_directory"] == str(project)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run_config(tmp_path / "run").data.source.interactions == project / "data" / "interactions.csv"
    run = load_run(tmp_path / "run")
    assert run.data.n_users == 12
    assert changed_inputs(tmp_path / "run") == [], "the recorded inputs are found, unchanged"
    (project / "data" / "interactions.csv").write_text("user_id,item_id,timestamp\n")
    assert any("interactions.csv changed" in change for change in changed_inputs(tmp_path / "run"))


def test_an_interrupted_run_with_relative_data_paths_resumes_from_another_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from booktower.cli.app import app
    import booktower.training.pipeline as pipeline

    project = tmp_path / "project"
    absolute = write_dataset(project / "data", 12)
    relative = project / "relative.yaml"
    relative.write_text(absolute.read_text().replace(f"{project}/", ""))
    monkeypatch.chdir(project)

    def stopped_after_fit(*args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C after the last epoch: checkpoints written, no model/, not finished

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "save_model", stopped_after_fit)
        interrupted = CliRunner().invoke(app, ["train", "--config", str(relative), "-o", str(tmp_path / "run"),
                                               "--set", "training.epochs=2"])
    assert interrupted.exit_code == 130, interrupted.output
    assert not (tmp_path / "run" / "model").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where data/interactions.csv names nothing
    resumed = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "run"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert load_run(tmp_path / "run").data.n_users == 12
    assert changed_inputs(tmp_path / "run") == []

    moved = CliRunner().invoke(app, ["train", "--config", str(relative), "-o", str(tmp_path / "again"),
                                     "--set", "training.epochs=1"])
    assert moved.exit_code != 0 and "data/interactions.csv" in moved.output, \
        "from this folder the relative paths name files that are not there: no silent fallback"
