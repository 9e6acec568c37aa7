"""A run's config may name its data relative to the folder training ran in: `export`, `evaluate` and `recommend
--run` then read the same files from any folder (run.json records that folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from booktower.config import dump_config, load_config
from booktower.evaluation.data_check import changed_inputs
from booktower.training.pipeline import train_run
from booktower.training.run import load_run, run_config
from tests.training.test_resume import write_dataset


def _relative_project(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """(project, its config naming data/interactions.csv ... relative to project), with the current folder there."""
    project = tmp_path / "project"
    absolute = write_dataset(project / "data", 12)
    relative = project / "relative.yaml"
    relative.write_text(absolute.read_text().replace(f"{project}/", ""))  # data/interactions.csv, ...
    monkeypatch.chdir(project)
    return project, relative


def _train_interrupted_after_fit(relative: Path, run: Path, monkeypatch):
    """`booktower train` stopped as by a Ctrl-C after the last epoch: checkpoints written, no model/, unfinished."""
    from typer.testing import CliRunner

    from booktower.cli.app import app
    import booktower.training.pipeline as pipeline

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "save_model", stopped)
        return CliRunner().invoke(app, ["train", "--config", str(relative), "-o", str(run), "--set", "training.epochs=2"])


def test_a_run_with_relative_data_paths_loads_from_another_folder(tmp_path, monkeypatch):
    project, relative = _relative_project(tmp_path, monkeypatch)
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

    _, relative = _relative_project(tmp_path, monkeypatch)
    interrupted = _train_interrupted_after_fit(relative, tmp_path / "run", monkeypatch)
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


def test_a_relative_cache_dir_is_the_start_folders_too(tmp_path, monkeypatch):
    """`evaluate --run` and `recommend --run` from another folder use the run's cache, not a new .booktower-cache/
    where they run. (The cache key spells the data paths as given, so the anchored absolute ones are one more
    entry there, prepared once and then found from every folder.)"""
    project = tmp_path / "project"
    absolute = write_dataset(project / "data", 12)
    relative = project / "relative.yaml"
    relative.write_text(absolute.read_text().replace(f"{project}/", ""))  # cache_dir: data/cache, ...
    monkeypatch.chdir(project)
    config = load_config(relative, ["training.epochs=1"])
    assert config.data.cache_dir == Path("data/cache")
    train_run(config, tmp_path / "run")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run_config(tmp_path / "run").data.cache_dir == project / "data" / "cache"
    cache = load_run(tmp_path / "run").data.summary["cache"]
    assert Path(cache["path"]).parent == project / "data" / "cache"
    assert list(elsewhere.iterdir()) == [], "nothing prepared or cached here"
    third = tmp_path / "third"
    third.mkdir()
    monkeypatch.chdir(third)
    assert load_run(tmp_path / "run").data.summary["cache"] == {**cache, "hit": True}
    assert list(third.iterdir()) == []


def test_a_cache_dir_anchored_on_resume_is_no_change_of_config(tmp_path, monkeypatch):
    """The cache is where prepared data is kept, not what is trained: a --resume with the run's --config from
    another folder (absolute data paths, relative cache) is no other run."""
    from booktower.training.run_folder import _check_resume_config

    config = load_config(write_dataset(tmp_path / "data", 12), ["data.cache_dir=cache"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(config))
    (run / "run.json").write_text(json.dumps({"working_directory": str(tmp_path)}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _check_resume_config(run, config)  # no ConfigError


def test_a_run_saved_before_the_auto_cuda_graph_resumes_with_todays_config(tmp_path):
    """Runs saved before `training.cuda_graph: auto` became the default say `false`; the graph changes how fast a
    step runs, not what it trains, so a --resume with the same --config is no other run (nor is `true`)."""
    from booktower.training.run_folder import _check_resume_config, resume_config_changes

    source = write_dataset(tmp_path / "data", 12)
    config = load_config(source)
    assert config.training.cuda_graph == "auto"
    run = tmp_path / "run"
    run.mkdir()
    saved = config.model_copy(update={"training": config.training.model_copy(update={"cuda_graph": False})})
    (run / "config.yaml").write_text(dump_config(saved))
    (run / "run.json").write_text(json.dumps({"working_directory": str(tmp_path)}))
    _check_resume_config(run, config)  # no ConfigError
    assert resume_config_changes(run, load_config(source, ["training.cuda_graph=true"])) == []
    changed = resume_config_changes(run, load_config(source, ["training.epochs=7"]))  # the check can fail
    assert len(changed) == 1 and changed[0].startswith("training.epochs:")


def test_a_run_on_the_bundled_sample_loads_from_another_folder(tmp_path, monkeypatch):
    """The built-in default falls back to the sample when data/users.csv is missing; read from elsewhere, its
    config names that path absolutely, and the fallback must still stand in for it."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "default.yaml",
                         ["training.epochs=1", "training.progress=false"])
    trained = train_run(config, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_run(tmp_path / "run").data.n_users == trained.data.n_users


def test_resume_accepts_a_config_whose_relative_paths_name_the_same_files_from_another_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from booktower.cli.app import app

    project, relative = _relative_project(tmp_path, monkeypatch)
    _train_interrupted_after_fit(relative, tmp_path / "run", monkeypatch)
    moved = tmp_path / "moved"
    shutil.copytree(project / "data", moved / "data")  # the same files, named relative to another folder
    (moved / "relative.yaml").write_text(relative.read_text())
    monkeypatch.chdir(project / "data")
    other = CliRunner().invoke(app, ["train", "--config", str(moved / "relative.yaml"), "-o", str(tmp_path / "run"),
                                     "--resume", "--set", "training.epochs=2"])
    assert other.exit_code == 2 and "differs from this config" in other.output, "other files: refused"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(project / "data")
    same = CliRunner().invoke(app, ["train", "--config", str(relative), "-o", str(tmp_path / "run"), "--resume",
                                    "--set", "training.epochs=2"])
    assert same.exit_code == 0, same.output



def _run_config_error(folder: Path) -> FileNotFoundError:
    with pytest.raises(FileNotFoundError) as exc:
        run_config(folder)
    return exc.value


def test_a_serving_bundle_passed_as_a_run_names_the_run_it_was_exported_from(tmp_path):
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"format": "booktower-bundle", "source": {"run": str(run)}}))
    message = str(_run_config_error(bundle))
    assert message.startswith(f"{bundle} is a serving bundle") and "not a training run" in message
    assert "the folder `booktower train -o` wrote (holding config.yaml and model/)" in message
    assert message.endswith(f"this bundle was exported from {run}: name {run} instead")
    shutil.rmtree(run)
    assert str(_run_config_error(bundle)).endswith(f"exported from {run}, which holds no run now: pass the folder "
                                                   "it moved to")


def test_a_folder_that_is_neither_run_nor_bundle_keeps_the_plain_message(tmp_path):
    (tmp_path / "manifest.json").write_text('{"name": "some web app"}')
    assert str(_run_config_error(tmp_path)) == f"{tmp_path}/config.yaml is missing: not a booktower run directory"
