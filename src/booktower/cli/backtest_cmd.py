"""`booktower backtest`: a serving bundle scored on the reads logged after its export (serving/backtest.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from booktower.cli import _paths
from booktower.cli._common import CONFIG_OPTION, SET_OPTION, cli_config, console, fail, setup_logging


def backtest_command(
    bundle: Path = typer.Option(..., "--bundle", callback=_paths.bundle_dir, help="The bundle that served."),
    later_log: Path = typer.Option(..., "--log", help="Reads logged after the bundle's export (CSV, Parquet or "
                                                     "JSON lines, in the training log's columns)."),
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    since: Optional[str] = typer.Option(None, "--since", help="Score reads from this ISO date or time on "
                                                              "(e.g. the export's date)."),
    until: Optional[str] = typer.Option(None, "--until", help="Score reads before this ISO date or time."),
    ks: str = typer.Option("10,20,50", "--k", help="Cut-offs, comma-separated."),
    out: Optional[Path] = typer.Option(None, "--out", callback=_paths.output_file,
                                       help="Write the measurements to this JSON file as well."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap CI."),
    new_readers: bool = typer.Option(True, "--new-readers/--no-new-readers",
                                     help="Also score the readers the bundle does not know, served from their "
                                          "first reads (one service call a reader)."),
    new_reader_history: int = typer.Option(3, "--new-reader-history", min=1,
                                           help="A new reader's first N books (of those the bundle holds) are "
                                                "the history the service answers; the later ones are scored."),
) -> None:
    """Score a serving bundle on the reads logged after its export: the lists it serves each known reader
    against the books they read next, beside its most-read list; and the lists it serves each new reader from
    their first --new-reader-history books, against the books they read after those. The log is read with the
    run's data config (--config, else the config of the run the bundle was exported from)."""
    import numpy as np

    from booktower.cli.serve_cmds import _bundle_errors
    from booktower.config._times import parse_cutoff
    from booktower.serving.backtest import backtest, read_later_log
    from booktower.serving.service import Recommender

    setup_logging()
    cutoffs = [_cutoff(parse_cutoff, value, name) for value, name in ((since, "--since"), (until, "--until"))]
    cut_offs = [int(part) for part in _ks(ks)]
    if not later_log.exists():
        fail(f"--log {later_log} does not exist. Fix: pass the file of reads logged since the export")
    with _bundle_errors():
        data_config = _data_config(bundle, config, set_)
        rec = Recommender.from_bundle(bundle, index_kind="exact")
        later, dropped, window = read_later_log(data_config, later_log, *cutoffs)
        result = backtest(rec, later, cut_offs, np.random.default_rng(seed),
                          new_reader_history=new_reader_history if new_readers else None)
    result.dropped, result.window = dropped, window
    for warning in result.warnings:
        console.print(f"warning: {warning}")
    _print(result, bundle)
    if out is not None:
        from booktower.utils.atomic import atomic_write_json

        atomic_write_json(out, {"bundle": str(bundle), "log": str(later_log), **result.as_dict()})
        console.print(f"wrote {out}")


def _data_config(bundle: Path, config: Path | None, set_: list[str] | None):
    """--config (with --set); else the config of the run the bundle was exported from, --set applied to it."""
    if config is not None:
        return cli_config(config, set_).data
    from booktower.serving.bundle import sha256_file
    from booktower.serving.manifest import MANIFEST
    from booktower.training.run import anchor_data_paths
    from booktower.utils.runinfo import working_directory

    source = json.loads((bundle / MANIFEST).read_text(encoding="utf-8")).get("source") or {}
    run = Path(source["run"]) if isinstance(source, dict) and isinstance(source.get("run"), str) else None
    if run is None or not (run / "config.yaml").is_file():
        where = f"the run it was exported from ({run}) holds no config.yaml now" if run else \
            "its manifest does not name the run it was exported from"
        fail(f"the later log is read with the training log's columns, and {where}. Fix: pass --config with the "
             "config the run was trained with")
    recorded = source.get("run_json_sha256")
    if recorded and (run / "run.json").is_file() and sha256_file(run / "run.json") != recorded:
        console.print(f"warning: {run} was written again since the bundle was exported (its run.json changed): its "
                      "config may not be the one the bundle was trained with; pass --config to be sure")
    return anchor_data_paths(cli_config(run / "config.yaml", set_), working_directory(run)).data


def _cutoff(parse, value: str | None, name: str) -> datetime | None:
    try:
        return parse(value, name)
    except ValueError as exc:
        fail(f"{exc}")


def _ks(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() and int(part) >= 1 for part in parts):
        fail(f"--k {text!r} is not a comma-separated list of whole numbers of 1 or more. Fix: e.g. --k 10,20,50")
    return parts


def _print(result, bundle: Path) -> None:
    if result.model:
        _table(f"{bundle}: {result.counts['readers_scored']:,} readers, {result.counts['targets']:,} later reads "
               "scored", "served lists", result)
    left_out = {key: value for key, value in result.counts.items()
                if key not in ("rows", "readers_in_log", "targets", "readers_scored") and value}
    notes = {"readers_unknown_to_bundle": " (as new readers: below)"} if result.new_readers is not None else {}
    console.print(f"{result.counts['rows']:,} rows by {result.counts['readers_in_log']:,} readers; not scored: "
                  + _listed(left_out, notes))
    if result.new_readers is not None:
        _print_new_readers(result.new_readers)
    outside = result.dropped.get("outside_window", 0)
    dropped = {key: value for key, value in result.dropped.items() if key != "outside_window"}
    if outside:
        console.print(f"outside the window (--since / --until): {outside:,} rows")
    if dropped:
        console.print("dropped while reading (as prepare drops them): "
                      + ", ".join(f"{key} {value:,}" for key, value in dropped.items()))


def _print_new_readers(new) -> None:
    """The new readers' table (when any was scored) and what of theirs was not scored."""
    counts = new.counts
    if new.model:
        _table(f"new readers: {counts['readers_scored']:,} served from their first {new.history} books, "
               f"{counts['targets']:,} later reads scored", "from history", new)
    left_out = {key: value for key, value in counts.items() if value and key in (
        "rows_of_books_not_in_bundle", "re_reads", "readers_with_too_few_reads", "pairs_of_withdrawn_books",
        "readers_without_target")}
    console.print(f"new readers: {counts['rows']:,} rows by {counts['readers']:,} readers; not scored: "
                  + _listed(left_out)
                  + (f" (a reader needs more than {new.history} books the bundle holds; --new-reader-history sets "
                     "how many make the history)" if counts["readers_with_too_few_reads"] else ""))
    if counts["history_reads_unpooled"]:
        console.print(f"new readers: {counts['history_reads_unpooled']:,} history books the model cannot pool (added "
                      "by `index add` to a model without model.history.content) count in the history features only, "
                      "as the service counts them")


def _listed(counts: dict[str, int], notes: dict[str, str] | None = None) -> str:
    """`name 1,234, other 5` (a count's note after its number), or `none`."""
    return ", ".join(f"{key.replace('_', ' ')} {value:,}{(notes or {}).get(key, '')}"
                     for key, value in counts.items()) or "none"


def _table(title: str, served: str, block) -> None:
    """Metric, the model's lists, the most-read list, the lead with its CI: one row per metric of `block`."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("metric", served, "most read", "lead [95% CI]"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name in block.model:
        mean, low, high = block.lead[name]
        table.add_row(name, f"{block.model[name]:.4f}", f"{block.popular[name]:.4f}",
                      f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest_command)
