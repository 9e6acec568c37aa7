"""`booktower export`, `booktower serve`, `booktower index add` (serving commands)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from booktower.cli._common import console, friendly_errors, setup_logging

index_app = typer.Typer(help="Change a served bundle's index.", no_args_is_help=True)

RUN_OPTION = typer.Option(..., "--run", help="A run directory written by `booktower train`.")
BUNDLE_OPTION = typer.Option(..., "--bundle", help="A bundle folder written by `booktower export`.")
INDEX_OPTION = typer.Option(None, "--index", help="Index kind: exact, hnsw or ivf (default: the run's config).")


@contextmanager
def _bundle_errors() -> Iterator[None]:
    """Bundle problems are user-facing too: print the message (it names the file), exit 2."""
    from booktower.serving.bundle import BundleError

    with friendly_errors():
        try:
            yield
        except BundleError as exc:
            console.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(2) from None


def export_command(run: Path = RUN_OPTION, output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Bundle folder."),
                   index: str | None = INDEX_OPTION) -> None:
    """Write a serving bundle from a trained run and report the ANN index's recall and speed-up."""
    from booktower.serving.export import export_run

    setup_logging()
    with _bundle_errors():
        manifest = export_run(run, output_dir, index_kind=index)
    ann = manifest["ann"]
    recall = ann[f"recall@{ann['k']}"]
    console.print(f"bundle written to {output_dir}: {manifest['n_items']} books, {manifest['n_users']} readers, "
                  f"d={manifest['dim']}, index={manifest['index']['kind']}")
    console.print(f"ANN ({ann['kind']}) recall@{ann['k']} vs exact = {recall:.4f}, "
                  f"{ann['ann_ms_per_query']:.3f} ms vs {ann['exact_ms_per_query']:.3f} ms per query "
                  f"(speed-up x{ann['speedup']:.2f}) over {ann['n_queries']} readers")
    typer.echo(json.dumps({"bundle": str(output_dir), "ann": ann}))


def serve_command(bundle: Path = BUNDLE_OPTION, host: str = typer.Option("127.0.0.1", help="Interface to bind."),
                  port: int = typer.Option(8000, help="TCP port."), workers: int = typer.Option(1, min=1, help="Worker processes."),
                  index: str | None = INDEX_OPTION,
                  threads: int = typer.Option(1, min=1, help="Torch threads per worker.")) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn); the bundle is verified before any request."""
    import uvicorn

    from booktower.serving.asgi import BUNDLE_ENV, INDEX_ENV, THREADS_ENV, NoDelayH11Protocol
    from booktower.serving.bundle import verify_bundle

    with _bundle_errors():
        verify_bundle(bundle)  # fail here, with the file named, rather than in every worker
    os.environ[BUNDLE_ENV] = str(bundle.resolve())
    os.environ[INDEX_ENV] = index or ""
    os.environ[THREADS_ENV] = str(threads)
    uvicorn.run("booktower.serving.asgi:app_from_env", factory=True, host=host, port=port, workers=workers,
                http=NoDelayH11Protocol,
                log_level="warning", access_log=False, limit_concurrency=1024, timeout_keep_alive=30)


@index_app.command("add")
def index_add_command(bundle: Path = BUNDLE_OPTION,
                      books: Path = typer.Option(..., "--books", help="New books: item_id, title, author, categories, num:*.")) -> None:
    """Add new books to a bundle (content-only vectors, no retraining); the bundle is rewritten atomically."""
    from booktower.serving.add_books import add_books

    setup_logging()
    with _bundle_errors():
        manifest = add_books(bundle, books)
    console.print(f"{bundle}: now {manifest['n_items']} books ({manifest.get('added_books', 0)} added after training)")


def recommend_rows(bundle: Path, user: str | None, history: str | None, k: int) -> list[dict[str, Any]]:
    """For `booktower recommend --bundle`: rows for a known user or a comma-separated history."""
    from booktower.serving.recommend import recommend_from_bundle

    items = [h.strip() for h in history.split(",") if h.strip()] if history else None
    with _bundle_errors():
        return recommend_from_bundle(bundle, user=user, history=items, k=k)


def print_rows(rows: list[dict[str, Any]], title: str) -> None:
    """The rows of `recommend_rows` as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("rank", "item_id", "title", "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in rows:
        table.add_row(str(row["rank"]), row["item_id"], row["title"], f"{row['score']:.4f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("serve")(serve_command)
    app.add_typer(index_app, name="index")
