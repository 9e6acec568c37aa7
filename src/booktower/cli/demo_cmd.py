"""`booktower demo`: the whole pipeline on synthetic data, in a few minutes on a laptop."""

from __future__ import annotations

from pathlib import Path

import typer

from booktower.cli import _paths
from booktower.cli._common import console, friendly_errors, setup_logging
from booktower.cli._ranges import at_least


def demo_command(
    output_dir: Path = typer.Option(Path("runs/demo"), "--output-dir", "-o", callback=_paths.output_dir,
                                    help="Where data, run and bundle go."),
    seed: int = typer.Option(0, "--seed", callback=at_least(0),
                              help="Seed for the synthetic data and the run (0 or more)."),
) -> None:
    """Generate synthetic books and readers, train and evaluate the two-tower beside baselines, report, export."""
    from booktower.demo import run_demo
    from booktower.evaluation.tables import print_metric_table

    setup_logging()
    with friendly_errors():
        result = run_demo(output_dir, seed=seed)
    rows = {"two-tower": result.metrics["test"], **{name: m["test"] for name, m in result.baselines.items()}}
    print_metric_table(rows, [10, 20, 50], console, title="test split (full-catalogue ranking)")
    if note := result.protocol_note():
        console.print(f"note: {note}")
    console.print(f"top 5 for reader {result.reader} (from the bundle):")
    for row in result.recommendations:
        console.print(f"  {row['rank']}. {row['title']}  ({row['score']:.3f})")
    console.print(f"report: {result.report}")
    console.print(f"bundle: {result.bundle_dir}  (serve it: booktower serve --bundle {result.bundle_dir})")
    console.print(f"done in {result.seconds:.0f}s")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
