"""How errors reach the user: OS errors a user can fix name the path and the fix; every message (and the user
text in it) prints exactly as given, brackets included."""

from __future__ import annotations

import errno
import os

import pytest
import typer

from booktower.cli._common import fail, friendly_errors


def describe_os_error(exc: OSError) -> str | None:
    from booktower.cli._errors import describe_os_error as describe

    return describe(exc)


@pytest.mark.parametrize(("code", "says"), [
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
    (errno.ENOSPC, "no space left on the device"),
    (errno.EISDIR, "this is a folder where a file is expected"),
])
def test_a_fixable_os_error_names_its_path_and_the_fix(code, says) -> None:
    message = describe_os_error(OSError(code, os.strerror(code), "/data/bundle/items.parquet"))
    assert message.startswith("/data/bundle/items.parquet: ") and says in message and "Fix:" in message


def test_a_failed_rename_names_its_target() -> None:
    exc = IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/.top.tmp", None, "/tmp/top")
    assert describe_os_error(exc).startswith("/tmp/top: ")


def test_booktower_file_not_found_messages_are_kept_and_bare_ones_get_the_path() -> None:
    assert describe_os_error(FileNotFoundError("run/config.yaml is missing: not a run")) == \
        "run/config.yaml is missing: not a run"
    assert describe_os_error(FileNotFoundError(errno.ENOENT, "No such file", "x.csv")) == \
        "x.csv does not exist. Fix: check the path"


def test_other_os_errors_are_not_explained_away() -> None:
    assert describe_os_error(OSError(errno.EIO, "I/O error", "disk")) is None
    assert describe_os_error(ConnectionResetError("peer")) is None


def test_friendly_errors_exits_2_on_a_read_only_file_system(capsys) -> None:
    with pytest.raises(typer.Exit) as caught, friendly_errors():
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/bundle")
    assert caught.value.exit_code == 2
    assert "error: /mnt/ro/bundle: the file system is read-only" in " ".join(capsys.readouterr().err.split())


def test_friendly_errors_keeps_the_traceback_of_an_unexpected_os_error() -> None:
    with pytest.raises(OSError, match="I/O error"), friendly_errors():
        raise OSError(errno.EIO, "I/O error", "disk")


def test_index_add_on_a_read_only_file_system_is_a_clean_error(cli, tmp_path, monkeypatch) -> None:
    from booktower.serving import add_books

    bundle = tmp_path / "bundle"
    bundle.mkdir()

    def read_only(bundle_dir, books, skip_existing=False):  # writing the new bundle beside the old one, on a read-only mount
        raise OSError(errno.EROFS, "Read-only file system", str(bundle_dir.parent / ".bundle.new.x"))

    monkeypatch.setattr(add_books, "add_books", read_only)
    outcome = cli("index", "add", "--bundle", bundle, "--books", tmp_path / "new.csv")
    assert outcome.refused(f"{tmp_path / '.bundle.new.x'}: the file system is read-only")


def test_fail_prints_brackets_as_given(capsys) -> None:
    with pytest.raises(typer.Exit):
        fail("reader '[bold]x' and [avg_rating] [/red]")
    assert "error: reader '[bold]x' and [avg_rating] [/red]" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["training.epochs=[bold]3", "data.columns.item_numeric=[avg_rating]"])
def test_overrides_are_echoed_with_their_brackets(cli, tmp_path, override) -> None:
    outcome = cli("prepare", "--set", override, "-o", tmp_path / "out")
    assert outcome.code == 2 and outcome.says("config error:", override.split("=", 1)[1])


def test_exception_text_keeps_its_brackets(cli, tmp_path) -> None:
    run = tmp_path / "run[red]"
    run.mkdir()
    outcome = cli("evaluate", "--run", run)
    assert outcome.refused(f"{run / 'config.yaml'} is missing")


def test_recommendation_tables_print_titles_and_ids_as_given(capsys) -> None:
    from booktower.cli.serve_cmds import print_rows

    row = {"rank": 1, "item_id": "[b]42", "title": "Dune [Hardcover] [red]", "score": 0.5}
    print_rows([row], "top-1 for [u]")
    out = capsys.readouterr().out
    assert "[b]42" in out and "Dune [Hardcover] [red]" in out and "top-1 for [u]" in out


def test_success_lines_print_paths_as_given(cli, tmp_path) -> None:
    output = tmp_path / "[bold]synth"
    outcome = cli("data", "synth", "-o", output, "--users", "10", "--books", "20")
    assert outcome.code == 0, outcome.output
    assert outcome.says(f"to {output / 'books.csv'}")


def test_index_add_of_a_latin1_books_file_asks_for_utf8_not_a_config_key(cli, bundle, tmp_path) -> None:
    """`index` takes no config and no --set: the fix must be one the user applies to the file."""
    books = tmp_path / "latin1.csv"
    books.write_bytes("item_id,title\nNEW1,Zoë\n".encode("latin-1"))
    outcome = cli("index", "add", "--bundle", bundle[0], "--books", books)
    assert outcome.refused(str(books), "not valid UTF-8 (line 2", "Fix: re-save the file as UTF-8",
                           f"iconv -f cp1252 -t utf-8 {books}")
    assert "data.source" not in outcome.flat and "encoding:" not in outcome.flat
