"""A file of a tiny trained run, damaged or edited by hand, makes `train --resume`, `evaluate` and `export`
exit 2 with one error naming the file and the fix (never a traceback), and the fix it names works."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from booktower.cli.app import app

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset

runner = CliRunner()
CHECKPOINT_FIX = "Fix: train into a new --output-dir without --resume, or restore the run folder from a copy"


def _flat(text: str) -> str:
    return "".join(text.split())  # the console wraps long lines anywhere, inside a path too


def _invoke(*args: str) -> str:
    """Run the CLI, check it exited 2 without a traceback; its output with whitespace removed."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return _flat(result.output)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(a `--validation-only` run, which `--resume` continues from its checkpoint; the same run finished)."""
    base = tmp_path_factory.mktemp("damaged")
    config = write_dataset(base / "data", 12)
    probe, finished = base / "probe", base / "finished"
    result = runner.invoke(app, ["train", "-c", str(config), "-o", str(probe), "--set", "training.epochs=2",
                                 "--validation-only"])
    assert result.exit_code == 0, result.output
    shutil.copytree(probe, finished)
    result = runner.invoke(app, ["train", "-o", str(finished), "--resume"])
    assert result.exit_code == 0 and (finished / "metrics.json").is_file(), result.output
    return probe, finished


@pytest.fixture
def probe(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[0], tmp_path / "probe"))


@pytest.fixture
def finished(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[1], tmp_path / "finished"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_state(run: Path, change: Callable[[dict], object]) -> None:
    path = run / "checkpoints" / "last" / "state.json"
    state = json.loads(path.read_text())
    state = change(state) or state
    path.write_text(json.dumps(state))


STATE_EDITS = {  # name: (the edit, what the message says after "state.json: ")
    "a key removed": (lambda state: state.pop("sampler") and None, "no sampler"),
    "the epoch a word": (lambda state: state.update(epoch="one"), "epoch is 'one', not a whole number"),
    "early stopping a list": (lambda state: state.update(early_stopping=[]), "early_stopping is [], not an"),
    "not an object": (lambda state: [1], "not the object with an `optimizers` list"),
    "no optimizers": (lambda state: state.pop("optimizers") and None, "not the object with an `optimizers` list"),
    "a generator state cut short": (lambda state: state.update(torch_rng=[1, 2]),
                                    "RuntimeError: Expected a CPUGeneratorImplState"),
}


@pytest.mark.parametrize("edit", list(STATE_EDITS))
def test_resume_from_an_edited_state_json_names_the_checkpoint_and_the_fix(probe: Path, edit: str):
    change, problem = STATE_EDITS[edit]
    edit_state(probe, change)
    said = _invoke("train", "-o", str(probe), "--resume")
    checkpoint = probe / "checkpoints" / "last"
    assert _flat(f"the checkpoint {checkpoint} cannot be loaded (state.json: {problem}") in said
    assert _flat(CHECKPOINT_FIX) in said


def test_resume_with_a_truncated_vocabulary_names_it(probe: Path):
    truncate(probe / "vocab" / "users.parquet")
    said = _invoke("train", "-o", str(probe), "--resume")
    assert _flat(f"file {probe / 'vocab' / 'users.parquet'}: it is damaged, or was edited") in said
    assert "ComputeError" in said
    assert _flat(f"Fix: restore {probe} from a copy, or train the run again") in said


@pytest.mark.parametrize("command", ["resume", "evaluate"])
def test_an_invalid_split_json_names_it(probe: Path, finished: Path, command: str):
    run = probe if command == "resume" else finished
    (run / "split.json").write_text('{"sha256": "a5')
    args = ["train", "-o", str(run), "--resume"] if command == "resume" else ["evaluate", "--run", str(run)]
    said = _invoke(*args)
    assert _flat(f"file {run / 'split.json'}: it is damaged") in said and "JSONDecodeError" in said
    assert _flat(f"Fix: restore {run} from a copy, or train the run again") in said


def test_export_with_a_truncated_item_vocabulary_names_it(finished: Path, tmp_path: Path):
    truncate(finished / "vocab" / "items.parquet")
    said = _invoke("export", "--run", str(finished), "-o", str(tmp_path / "bundle"))
    assert _flat(f"file {finished / 'vocab' / 'items.parquet'}: it is damaged") in said
    assert not (tmp_path / "bundle").exists()


def test_evaluate_with_an_invalid_run_json_names_it(finished: Path):
    (finished / "run.json").write_text('{"inputs": ')
    said = _invoke("evaluate", "--run", str(finished))
    assert _flat(f"file {finished / 'run.json'}: it is damaged") in said


def test_evaluate_with_metrics_json_not_an_object_says_to_move_it_aside_which_works(finished: Path):
    (finished / "metrics.json").write_text("[1]")
    said = _invoke("evaluate", "--run", str(finished))
    assert _flat(f"file {finished / 'metrics.json'}: it is damaged, or was edited after booktower wrote "
                 "it (it holds a list where booktower writes an object)") in said
    assert _flat(f"Fix: move it aside, then run `booktower evaluate --run {finished}`") in said
    (finished / "metrics.json").rename(finished / "metrics.json.damaged")
    result = runner.invoke(app, ["evaluate", "--run", str(finished)])
    assert result.exit_code == 0, result.output
    assert set(json.loads((finished / "metrics.json").read_text())) >= {"validation", "test"}


def test_a_damaged_config_yaml_names_the_file_and_the_fix(finished: Path):
    config = finished / "config.yaml"
    config.write_text(config.read_text()[: config.stat().st_size // 2] + "\n  broken: [\n")
    said = _invoke("evaluate", "--run", str(finished))
    assert _flat(f"{config}: not valid YAML") in said and "unicodestring" not in said
    assert _flat("restore it (or the run folder) from a copy, or train the run again") in said
