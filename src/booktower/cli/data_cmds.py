"""`booktower prepare` and `booktower data ...`."""

from __future__ import annotations

from pathlib import Path

import typer

from booktower.cli._common import (
    CONFIG_OPTION,
    SET_OPTION,
    cli_config,
    console,
    friendly_errors,
    setup_logging,
)

data_app = typer.Typer(help="Create or download input data.", no_args_is_help=True)


def prepare_command(
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where data_summary.json and the prepared data go."),
) -> None:
    """Validate, prune, split and featurise the data; write DIR/data_summary.json."""
    from booktower.data.summary import print_summary, write_prepared_run

    setup_logging()
    cfg = cli_config(config, set_)
    with friendly_errors():
        data = write_prepared_run(cfg, output_dir)
    print_summary(data.summary, console)
    console.print(f"wrote {output_dir / 'data_summary.json'}")


@data_app.command("synth")
def synth_command(
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where books.csv and users.csv go."),
    users: int = typer.Option(2000, "--users", min=10, help="Number of readers."),
    books: int = typer.Option(1500, "--books", min=20, help="Number of books."),
    mean_history: float = typer.Option(26.0, "--mean-history", min=3.0, help="Mean reads per reader."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed writes the same files)."),
) -> None:
    """Write synthetic books.csv + users.csv (Amazon Reviews 2023 Books format) with learnable structure."""
    from booktower.data.synth import SynthConfig, write_synthetic

    setup_logging()
    written = write_synthetic(output_dir, SynthConfig(n_users=users, n_books=books, mean_history=mean_history), seed)
    console.print(f"wrote {written['books']:,} books to {written['books_path']} and "
                  f"{written['interactions']:,} interactions of {written['users']:,} readers to {written['users_path']}")


@data_app.command("fetch")
def fetch_command(
    dataset: str = typer.Argument(..., help="Dataset to download: amazon-2023-books."),
    output_dir: Path = typer.Option(Path("data"), "--output-dir", "-o", help="Where raw/, books.csv, users.csv go."),
    base_url: str | None = typer.Option(None, "--base-url", help="Serve the files from BASE/<file name> instead."),
    sha256: list[str] | None = typer.Option(None, "--sha256", help="Expected checksum: FILE=HEX (repeatable)."),
    convert: bool = typer.Option(True, "--convert/--no-convert", help="Convert to books.csv + users.csv."),
) -> None:
    """Download the public Amazon Reviews 2023 Books files (resumable, verified) and convert them."""
    from booktower.data.fetch import DATASETS, fetch_amazon_2023_books

    setup_logging()
    checksums = {}
    for item in sha256 or []:
        name, _, digest = item.partition("=")
        if not digest:
            console.print(f"[red]error[/red]: --sha256 {item!r} must look like meta_Books.jsonl.gz=<hex>")
            raise typer.Exit(2)
        checksums[name] = digest
    if dataset not in DATASETS:
        console.print(f"[red]error[/red]: unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
        raise typer.Exit(2)
    with friendly_errors():
        fetch_amazon_2023_books(output_dir, base_url=base_url, checksums=checksums, convert=convert,
                                log_line=console.print)
