"""Path mistakes in any command are one `error:` line (exit 2) that names the option and the fix, found while
the command line is parsed: before data is prepared or a model trained, and before anything is overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest


def _output_dir_commands(tmp_path: Path) -> dict[str, list[str]]:
    """Every command with --output-dir, with whatever else it needs to get as far as that option."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    return {
        "prepare": ["prepare"],
        "train": ["train"],
        "sweep": ["sweep", "--storage", f"sqlite:///{tmp_path / 'sweep.db'}"],
        "baselines": ["baselines"],
        "export": ["export", "--run", str(run)],
        "demo": ["demo"],
        "data synth": ["data", "synth"],
        "data fetch": ["data", "fetch", "amazon-2023-books"],
    }


@pytest.mark.parametrize("command", ["prepare", "train", "sweep", "baselines", "export", "demo", "data synth",
                                     "data fetch"])
def test_an_output_dir_that_is_a_file_is_refused_and_kept(cli, tmp_path, command) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    outcome = cli(*_output_dir_commands(tmp_path)[command], "--output-dir", existing)
    assert outcome.refused(f"--output-dir {existing} is a file, not a folder", "Fix: pass a folder path")
    assert existing.read_text() == "keep me"


def test_an_output_dir_under_a_file_is_refused(cli, tmp_path) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    outcome = cli("prepare", "--output-dir", existing / "sub")
    assert outcome.refused(f"--output-dir {existing / 'sub'}", "is a file, so nothing can be created in it")


def _read_only(monkeypatch, folder: Path) -> None:
    """A read-only mount cannot be made in a test: creating a file in `folder` fails as it would on one."""
    import errno
    import tempfile

    real = tempfile.TemporaryFile

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir") or "") == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(folder))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_where_nothing_can_be_created_is_refused_even_for_root(cli) -> None:
    # os.access says yes to root under /proc; only trying to create a file tells
    outcome = cli("train", "--output-dir", "/proc/booktower-run")
    assert outcome.refused("--output-dir /proc/booktower-run", "/proc is not writable")


def test_an_unwritable_output_dir_is_refused(cli, tmp_path, monkeypatch) -> None:
    _read_only(monkeypatch, tmp_path)
    outcome = cli("train", "--output-dir", tmp_path / "run")
    assert outcome.refused(f"--output-dir {tmp_path / 'run'}", f"{tmp_path} is not writable")


@pytest.mark.parametrize("command", [["prepare", "-o", "out"], ["train", "-o", "out"],
                                     ["baselines", "-o", "out"], ["sweep", "--storage", "sqlite:///s.db"]])
def test_a_config_that_is_a_folder_is_refused_with_an_example_file(cli, tmp_path, command) -> None:
    (tmp_path / "default.yaml").write_text("seed: 1\n")
    outcome = cli(*command, "--config", tmp_path)
    assert outcome.refused(f"--config {tmp_path} is a folder", f"e.g. {tmp_path / 'default.yaml'}")


def test_a_missing_config_is_refused(cli, tmp_path) -> None:
    outcome = cli("prepare", "--config", tmp_path / "nope.yaml", "-o", tmp_path / "out")
    assert outcome.refused(f"--config {tmp_path / 'nope.yaml'} does not exist", "pass an existing YAML file")


def test_an_inherited_config_that_is_a_folder_is_a_config_error(cli, tmp_path) -> None:
    (tmp_path / "parent").mkdir()
    config = tmp_path / "child.yaml"
    config.write_text("inherit: parent\n")
    outcome = cli("prepare", "--config", config, "-o", tmp_path / "out")
    assert outcome.code == 2 and outcome.says("config error:", f"{tmp_path / 'parent'}", "is a folder")
    assert "Traceback" not in outcome.output


@pytest.mark.parametrize("command", [["evaluate"], ["report"], ["export", "-o", "b"],
                                     ["recommend", "--all-test-users", "--out", "t.parquet"]])
def test_a_run_that_is_missing_or_a_file_is_refused(cli, tmp_path, command) -> None:
    missing, a_file = tmp_path / "nowhere", tmp_path / "notes.txt"
    a_file.write_text("x")
    assert cli(*command, "--run", missing).refused(f"--run {missing} does not exist", "booktower train")
    assert cli(*command, "--run", a_file).refused(f"--run {a_file} is a file, not a folder")


def test_compare_refuses_a_missing_run(cli, tmp_path) -> None:
    assert cli("compare", tmp_path / "a", tmp_path).refused(f"{tmp_path / 'a'} does not exist")


@pytest.mark.parametrize("command", [["serve"], ["recommend", "--user", "u1"],
                                     ["index", "add", "--books", "x.csv"]])
def test_a_bundle_that_is_missing_or_a_file_is_refused(cli, tmp_path, command) -> None:
    missing, a_file = tmp_path / "nowhere", tmp_path / "notes.txt"
    a_file.write_text("x")
    assert cli(*command, "--bundle", missing).refused(f"--bundle {missing} does not exist",
                                                      "booktower export")
    assert cli(*command, "--bundle", a_file).refused(f"--bundle {a_file} is a file, not a folder")


def test_index_add_refuses_a_bundle_it_cannot_rewrite(cli, tmp_path, monkeypatch) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _read_only(monkeypatch, tmp_path)
    outcome = cli("index", "add", "--bundle", bundle, "--books", tmp_path / "new.csv")
    assert outcome.refused(f"--bundle {bundle}", "not writable", "copy the bundle to a folder you can write")


@pytest.mark.parametrize("other_manifest", [None, '{"name": "my web app"}'])
def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(cli, tmp_path, other_manifest) -> None:
    run, target = tmp_path / "run", tmp_path / "results"
    run.mkdir()
    target.mkdir()
    (target / "keep.txt").write_text("keep me")
    if other_manifest:  # a manifest.json of something else does not make a folder a bundle
        (target / "manifest.json").write_text(other_manifest)
    outcome = cli("export", "--run", run, "--output-dir", target)
    assert outcome.refused(f"--output-dir {target} is a folder that holds files but no booktower bundle",
                           f"e.g. {target / 'bundle'}")
    assert (target / "keep.txt").read_text() == "keep me"


def test_recommend_out_that_is_a_folder_is_refused(cli, tmp_path) -> None:
    outcome = cli("recommend", "--run", tmp_path, "--all-test-users", "--out", tmp_path)
    assert outcome.refused(f"--out {tmp_path} is a folder", f"e.g. {tmp_path / 'recommendations.parquet'}")
