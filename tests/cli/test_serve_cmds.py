"""`export` and `serve`: an index kind or port that cannot work is refused while parsing, before a bundle is
loaded or a worker started; a valid kind reaches the workers as its plain name."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def workers(monkeypatch) -> list[dict]:
    """uvicorn.run replaced by a recorder: the keyword arguments of every server that would have started."""
    import uvicorn

    started: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.append(kwargs))
    return started


def test_index_kinds_are_the_configs() -> None:
    from booktower.cli.serve_cmds import INDEX_KINDS

    assert INDEX_KINDS == ("exact", "hnsw", "ivf")


def test_serve_refuses_an_unknown_index_before_any_worker_starts(cli, bundle, workers) -> None:
    outcome = cli("serve", "--bundle", bundle[0], "--index", "bogus")
    assert outcome.code == 2 and outcome.says("'--index'", "'bogus' is not one of 'exact', 'hnsw', 'ivf'")
    assert workers == []


def test_export_refuses_an_unknown_index(cli, tmp_path) -> None:
    outcome = cli("export", "--run", tmp_path, "-o", tmp_path / "b", "--index", "bogus")
    assert outcome.code == 2 and outcome.says("'bogus' is not one of 'exact', 'hnsw', 'ivf'")
    assert not (tmp_path / "b").exists()


def test_serve_passes_the_chosen_index_to_the_workers_by_name(cli, bundle, workers, monkeypatch) -> None:
    from booktower.serving.asgi import BUNDLE_ENV, INDEX_ENV, RELOAD_ENV, THREADS_ENV

    for name in (BUNDLE_ENV, INDEX_ENV, THREADS_ENV, RELOAD_ENV):  # serve sets them for its workers; restore after
        monkeypatch.delenv(name, raising=False)
    outcome = cli("serve", "--bundle", bundle[0], "--index", "hnsw", "--port", "8123", "--reload-every", "0.5")
    assert outcome.code == 0, outcome.output
    assert [w["port"] for w in workers] == [8123]
    assert os.environ[INDEX_ENV] == "hnsw"  # the kind's name, not the enum's repr
    assert float(os.environ[RELOAD_ENV]) == 0.5
    assert outcome.says("at http://127.0.0.1:8123 with 1 worker", "API docs at /docs"), "it says where it listens"


def test_serve_refuses_a_negative_reload_interval(cli, bundle, workers) -> None:
    assert cli("serve", "--bundle", bundle[0], "--reload-every", "-1").code == 2
    assert workers == []


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_serve_refuses_a_port_outside_the_tcp_range(cli, bundle, workers, port) -> None:
    assert cli("serve", "--bundle", bundle[0], "--port", port).code == 2
    assert workers == []


def test_serve_refuses_a_busy_port_before_saying_it_serves(cli, bundle, workers) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        outcome = cli("serve", "--bundle", bundle[0], "--port", str(port))
    assert outcome.code == 2 and outcome.says(f"cannot listen on 127.0.0.1 port {port}", "another --port")
    assert "serving" not in outcome.output and workers == []


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1) to bind")
def test_serve_takes_an_ipv6_host_in_brackets(cli, bundle, workers, monkeypatch) -> None:
    from booktower.serving.asgi import BUNDLE_ENV, INDEX_ENV, RELOAD_ENV, THREADS_ENV

    for name in (BUNDLE_ENV, INDEX_ENV, THREADS_ENV, RELOAD_ENV):
        monkeypatch.delenv(name, raising=False)
    outcome = cli("serve", "--bundle", bundle[0], "--host", "[::1]", "--port", "8124")
    assert outcome.code == 0, outcome.output
    assert [w["host"] for w in workers] == ["::1"] and outcome.says("at http://[::1]:8124")


def test_export_of_a_bundle_says_it_is_no_run_and_what_to_pass(cli, bundle, tmp_path) -> None:
    outcome = cli("export", "--run", bundle[0], "-o", tmp_path / "out")
    assert outcome.refused(f"{bundle[0]} is a serving bundle", "not a training run",
                           "name the training run directory, the folder `booktower train -o` wrote",
                           "does not name the run it was exported from")
    assert "config.yaml is missing" not in outcome.output and not (tmp_path / "out").exists()
