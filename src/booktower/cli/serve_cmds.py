"""`booktower export`, `booktower serve` (serving commands; `index` is in index_cmds.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, get_args

import typer

from booktower.cli import _paths
from booktower.cli._bundle_query import BundleQuery, parse_history
from booktower.cli._common import console, fail, friendly_errors, setup_logging
from booktower.cli._ranges import at_least, within
from booktower.config.serving import IndexConfig

INDEX_KINDS: tuple[str, ...] = get_args(IndexConfig.model_fields["kind"].annotation)
# An enum, so typer refuses a wrong kind while parsing, not the index builder after the bundle was loaded
# (under `serve`, inside every worker after the bundle was verified).
IndexKind = Enum("IndexKind", {kind: kind for kind in INDEX_KINDS}, type=str)

RUN_OPTION = typer.Option(..., "--run", help="A run directory written by `booktower train`.",
                          callback=_paths.run_dir)
BUNDLE_OPTION = typer.Option(..., "--bundle", help="A bundle folder written by `booktower export`.",
                             callback=_paths.bundle_dir)
INDEX_OPTION = typer.Option(None, "--index", help="Index kind (default: the run's config).")


@contextmanager
def _bundle_errors(writing: Path | None = None) -> Iterator[None]:
    """Bundle problems are user-facing too: print the message (it names the file), exit 2. `writing`: the
    bundle folder a command writes, named by an OS error that names no file (see `friendly_errors`)."""
    from booktower.serving.bundle import BundleError

    with friendly_errors(writing):
        try:
            yield
        except BundleError as exc:
            fail(str(exc))


def export_command(run: Path = RUN_OPTION,
                   output_dir: Path = typer.Option(..., "--output-dir", "-o", callback=_paths.new_bundle_dir,
                                                   help="Bundle folder: new, or an old bundle to replace."),
                   index: IndexKind | None = INDEX_OPTION) -> None:
    """Write a serving bundle from a trained run and report the ANN index's recall and speed-up."""
    from booktower.serving.export import export_run

    setup_logging()
    with _bundle_errors(writing=output_dir):
        manifest = export_run(run, output_dir, index_kind=index.value if index else None)
    ann = manifest["ann"]
    recall = ann[f"recall@{ann['k']}"]
    console.print(f"bundle written to {output_dir}: {manifest['n_items']} books, {manifest['n_users']} readers, "
                  f"d={manifest['dim']}, index={manifest['index']['kind']}")
    console.print(f"ANN ({ann['kind']}) recall@{ann['k']} vs exact = {recall:.4f}, "
                  f"{ann['ann_ms_per_query']:.3f} ms vs {ann['exact_ms_per_query']:.3f} ms per query "
                  f"(speed-up x{ann['speedup']:.2f}) over {ann['n_queries']} readers")
    typer.echo(json.dumps({"bundle": str(output_dir), "ann": ann}))


def serve_command(bundle: Path = BUNDLE_OPTION, host: str = typer.Option("127.0.0.1", help="Interface to bind."),
                  port: int = typer.Option(8000, callback=within(1, 65535), help="TCP port (1 to 65535)."),
                  workers: int = typer.Option(1, callback=at_least(1), help="Worker processes (1 or more)."),
                  index: IndexKind | None = INDEX_OPTION,
                  threads: int = typer.Option(1, callback=at_least(1),
                                              help="Torch threads per worker (1 or more)."),
                  reload_every: float = typer.Option(
                      2.0, "--reload-every", callback=within(0.0, 86_400.0),
                      help="Seconds between checks for a rewritten bundle (index add / withdraw, a new export), up to "
                           "86400; 0 = never.")) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn); the bundle is verified before any request."""
    import uvicorn

    from booktower.serving.asgi import BUNDLE_ENV, INDEX_ENV, RELOAD_ENV, THREADS_ENV, NoDelayH11Protocol
    from booktower.serving.bundle import verify_bundle

    with _bundle_errors():
        manifest = verify_bundle(bundle)  # fail here, with the file named, rather than in every worker
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # `[::1]`, as a URL writes it
    _check_can_listen(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    console.print(f"serving {bundle} ({manifest['n_items']:,} books, {manifest['n_users']:,} readers) at "
                  f"http://{shown_host}:{port} with {workers} worker{'s' if workers > 1 else ''}; API docs at /docs; "
                  "Ctrl-C stops")
    os.environ[BUNDLE_ENV] = str(bundle.resolve())
    os.environ[INDEX_ENV] = index.value if index else ""
    os.environ[THREADS_ENV] = str(threads)
    os.environ[RELOAD_ENV] = str(reload_every)
    uvicorn.run("booktower.serving.asgi:app_from_env", factory=True, host=host, port=port, workers=workers,
                http=NoDelayH11Protocol,
                log_level="warning", access_log=False, limit_concurrency=1024, timeout_keep_alive=30)


def _check_can_listen(host: str, port: int) -> None:
    """Bind the address once before the workers start, so that a busy port or an unknown host is an error that
    says what to change, and "serving at" is only printed for an address that can be served."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        fail(f"--host {host}: {exc.strerror}. Fix: pass an address of this machine (127.0.0.1, 0.0.0.0, ::1) "
             "or a name that resolves to one")
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing port is free
        try:
            probe.bind(address)
        except OSError as exc:
            fail(f"cannot listen on {host} port {port}: {exc.strerror}. Fix: pass another --port, or stop the "
                 "process that holds it")


def recommend_rows(bundle: Path, user: str | None, history: str | None, k: int) -> list[dict[str, Any]]:
    """Rows for a known user or a comma-separated history (what `booktower recommend --bundle` prints)."""
    items = parse_history(history) if history else None
    return query_rows(bundle, BundleQuery(user or "anonymous reader", user=user, history=items), k)


def query_rows(bundle: Path, query: BundleQuery, k: int, categories: list[str] | None = None,
               max_per_author: int | None = None) -> list[dict[str, Any]]:
    """Top-k rows (rank, item_id, title, author, categories, score) for one checked query."""
    from booktower.serving.recommend import recommend_from_bundle, unknown_items, unpooled_items

    with _bundle_errors():
        rows = recommend_from_bundle(bundle, user=query.user, history=query.history, k=k, categories=categories,
                                     max_per_author=max_per_author)
        left_out = unknown_items(bundle, query.history) if query.history else []
        unpooled = unpooled_items(bundle, query.history) if query.history else []
    if left_out:
        console.print(f"left out of the history, not in {bundle} (unknown_history): {_some(left_out)}")
    if unpooled:
        console.print(f"left out of the pooled history (unpooled_history), books added after training whose "
                      f"content this model cannot pool (it was trained without model.history.content, or the book "
                      f"has none); they count only as reads in the history features: {_some(unpooled)}")
    return rows


def _some(ids: list[str], shown: int = 10) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def print_rows(rows: list[dict[str, Any]], title: str) -> None:
    """The rows of `recommend_rows` as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)  # titles and ids may hold brackets: the console below prints them as given
    for column in ("rank", "item_id", "title", "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in rows:
        table.add_row(str(row["rank"]), row["item_id"], row["title"], f"{row['score']:.4f}")
    Console(markup=False).print(table)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("serve")(serve_command)
