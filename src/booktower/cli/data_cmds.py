"""`booktower prepare` and `booktower data ...`."""

from __future__ import annotations

from pathlib import Path

import typer

from booktower.cli import _paths
from booktower.cli._common import (
    CONFIG_OPTION,
    SET_OPTION,
    cli_config,
    console,
    fail,
    friendly_errors,
    setup_logging,
)
from booktower.cli._ranges import at_least, within

data_app = typer.Typer(help="Create or download input data.", no_args_is_help=True)

URL_SCHEMES = ("http://", "https://", "file://")


def base_url_check(value: str | None) -> str | None:
    """The downloader opens URLs only: a bare folder would fail deep inside urllib with 'unknown url type'."""
    if value is not None and not value.lower().startswith(URL_SCHEMES):
        local = Path(value).expanduser()
        hint = f" (for this folder: --base-url {local.absolute().as_uri()})" if local.is_dir() else ""
        fail(f"--base-url {value!r} is not a URL. Fix: start it with http://, https:// or file://{hint}")
    return value


def prepare_command(
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    output_dir: Path = typer.Option(..., "--output-dir", "-o", callback=_paths.output_dir,
                                    help="Where the record of the run goes: data_summary.json, config.yaml and "
                                         "run.json. The prepared arrays go to the cache, data.cache_dir "
                                         "(./.booktower-cache by default), where `train` reuses them; with "
                                         "data.cache_dir=null they are not kept."),
) -> None:
    """Validate, prune, split and featurise the data; write DIR/data_summary.json (counts, drops, warnings) and
    cache the prepared arrays in data.cache_dir for `train` to reuse."""
    from booktower.data.summary import print_summary, write_prepared_run

    setup_logging()
    cfg = cli_config(config, set_)
    with friendly_errors():
        data = write_prepared_run(cfg, output_dir)
    print_summary(data.summary, console)
    console.print(f"wrote {output_dir / 'data_summary.json'}, config.yaml and run.json")
    console.print(_where_the_arrays_are(data.summary.get("cache")))


def _where_the_arrays_are(cache: dict | None) -> str:
    """The output folder holds the record only: say where the prepared arrays went, or that none were kept."""
    if cache and cache.get("error"):
        return f"prepared arrays not kept: {cache['path']} could not be written ({cache['error']}; data.cache_dir)"
    if cache:
        return f"prepared arrays {'reused from' if cache['hit'] else 'cached in'} {cache['path']} (data.cache_dir)"
    return "prepared arrays not kept: data.cache_dir is null (set it to a folder to keep them for `train`)"


@data_app.command("synth")
def synth_command(
    output_dir: Path = typer.Option(..., "--output-dir", "-o", callback=_paths.output_dir,
                                    help="Where books.csv and users.csv go."),
    users: int = typer.Option(2000, "--users", callback=at_least(10), help="Number of readers (10 or more)."),
    books: int = typer.Option(1500, "--books", callback=at_least(20), help="Number of books (20 or more)."),
    mean_history: float = typer.Option(26.0, "--mean-history", callback=within(3.0, 10_000.0),
                                        help="Mean reads per reader (3 to 10000)."),
    seed: int = typer.Option(0, "--seed", callback=at_least(0),
                              help="Random seed, 0 or more (the same seed writes the same files)."),
) -> None:
    """Write synthetic books.csv + users.csv (Amazon Reviews 2023 Books format) with learnable structure."""
    from booktower.data.synth import SynthConfig, write_synthetic

    setup_logging()
    with friendly_errors():
        config = SynthConfig(n_users=users, n_books=books, mean_history=mean_history)
        written = write_synthetic(output_dir, config, seed)
    console.print(f"wrote {written['books']:,} books to {written['books_path']} and "
                  f"{written['interactions']:,} interactions of {written['users']:,} readers to {written['users_path']}")


@data_app.command("fetch")
def fetch_command(
    dataset: str = typer.Argument(..., help="Dataset to download: amazon-2023-books."),
    output_dir: Path = typer.Option(Path("data"), "--output-dir", "-o", callback=_paths.output_dir,
                                    help="Where raw/, books.csv, users.csv go. meta_Books.jsonl.gz and "
                                         "Books.jsonl.gz placed by hand in it (or in its raw/) are used "
                                         "instead of downloading."),
    base_url: str | None = typer.Option(None, "--base-url", callback=base_url_check,
                                        help="Fetch BASE/<file name> instead (http, https or file URL)."),
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
            fail(f"--sha256 {item!r} must look like meta_Books.jsonl.gz=<hex>")
        checksums[name] = digest
    if dataset not in DATASETS:
        fail(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    with friendly_errors():
        fetch_amazon_2023_books(output_dir, base_url=base_url, checksums=checksums, convert=convert,
                                log_line=console.print)
