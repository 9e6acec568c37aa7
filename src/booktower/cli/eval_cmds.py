"""`booktower baselines | evaluate | report | compare | recommend`: thin wrappers over booktower.evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from booktower.cli._common import (
    CONFIG_OPTION,
    SET_OPTION,
    cli_config,
    console,
    friendly_errors,
    setup_logging,
)

RUN_OPTION = typer.Option(..., "--run", "-r", help="A run directory written by `booktower train`.")


def baselines_command(
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    models: str = typer.Option("pop,itemknn,ease,als,bpr", "--models", help="Comma-separated baselines."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where metrics.json and per-user tables go."),
) -> None:
    """Fit each baseline on train (validation metrics) and on train + validation (test metrics)."""
    from booktower.data.prepare import prepare
    from booktower.evaluation.baselines import run_baselines
    from booktower.evaluation.tables import print_metric_table

    setup_logging()
    cfg = cli_config(config, set_)
    names = [n.strip() for n in models.split(",") if n.strip()]
    with friendly_errors():
        data, _ = prepare(cfg.data)
        try:
            table = run_baselines(names, cfg.baselines, data, cfg.evaluation.ks, cfg.seed, output_dir,
                                  chunk=cfg.evaluation.user_chunk)
        except ValueError as exc:
            console.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(2) from None
    print_metric_table({name: parts["test"] for name, parts in table.items()}, cfg.evaluation.ks, console,
                       title="test (fit on train + validation)")
    console.print(f"wrote {output_dir / 'metrics.json'}")


def evaluate_command(run: Path = RUN_OPTION, report: bool = typer.Option(True, help="Re-render report.md.")) -> None:
    """Re-score a trained run on validation and test; rewrite metrics.json, per-user tables, diagnostics."""
    from booktower.evaluation.report import write_report
    from booktower.evaluation.run_eval import reevaluate_run

    setup_logging()
    with friendly_errors():
        config, evaluation = reevaluate_run(run)
        from booktower.evaluation.tables import print_metric_table

        print_metric_table({"validation": evaluation.validation.metrics, "test": evaluation.test.metrics},
                           config.evaluation.ks, console, title=str(run))
        if report:
            console.print(f"wrote {write_report(run)}")
    console.print(f"wrote {run / 'metrics.json'}")


def report_command(run: Path = RUN_OPTION) -> None:
    """Render RUN/report.md and RUN/plots/*.png from the run's files."""
    from booktower.evaluation.report import write_report

    setup_logging()
    with friendly_errors():
        path = write_report(run)
    console.print(f"wrote {path}")


def compare_command(
    runs: list[Path] | None = typer.Argument(None, help="RUN_A RUN_B (run or baseline directories)."),
    run_opt: list[Path] | None = typer.Option(None, "--run", "-r", help="Alternative to the arguments."),
    metric: str = typer.Option("NDCG@10", help="Per-user metric column to compare."),
    samples: int = typer.Option(2000, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
) -> None:
    """Paired comparison of two runs on the same split: mean difference, 95% CI, bootstrap and Wilcoxon p."""
    import json

    import numpy as np

    from booktower.evaluation.compare import compare_runs

    setup_logging()
    chosen = list(runs or []) + list(run_opt or [])
    if len(chosen) != 2:
        console.print("[red]error[/red]: give exactly two runs: booktower compare RUN_A RUN_B")
        raise typer.Exit(2)
    with friendly_errors():
        try:
            result = compare_runs(chosen[0], chosen[1], metric, np.random.default_rng(seed), samples)
        except ValueError as exc:
            console.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(2) from None
    console.print(f"A = {chosen[0]}\nB = {chosen[1]}")
    console.print(f"{metric}: A {result.mean_a:.4f}  B {result.mean_b:.4f}  A - B {result.diff:+.4f} "
                  f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}]  p(bootstrap) {result.p_bootstrap:.3g}  "
                  f"p(Wilcoxon) {result.p_wilcoxon:.3g}  users A better/worse {result.wins}/{result.losses} "
                  f"of {result.n_users}")
    print(json.dumps(result.as_dict()))


def recommend_command(
    run: Optional[Path] = typer.Option(None, "--run", "-r", help="A run directory (masked test top-K to a file)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="A bundle from `booktower export` (print top-K)."),
    all_test_users: bool = typer.Option(False, "--all-test-users", help="With --run: every user with a test item."),
    users: Optional[list[str]] = typer.Option(None, "--user", help="Raw user id (repeatable; one with --bundle)."),
    history: Optional[str] = typer.Option(None, "--history", help="With --bundle: ID,ID,... for an anonymous reader."),
    k: int = typer.Option(50, "--k", min=1, help="List length."),
    out: Optional[Path] = typer.Option(None, "--out", help="With --run: Parquet file (user_id, rank, item_id, score)."),
) -> None:
    """Recommend: from a bundle (titles and scores), or a run's masked test top-K lists (the metrics' source)."""
    setup_logging()
    if (run is None) == (bundle is None):
        console.print("[red]error[/red]: pass exactly one of --run RUN or --bundle BUNDLE")
        raise typer.Exit(2)
    if bundle is not None:
        from booktower.cli.serve_cmds import print_rows, recommend_rows

        if not users and not history:
            console.print("[red]error[/red]: with --bundle pass --user USER_ID or --history ID,ID,...")
            raise typer.Exit(2)
        with friendly_errors():
            rows = recommend_rows(bundle, (users or [None])[0], history, k)
        print_rows(rows, f"top-{k} for {(users or ['anonymous reader'])[0]}")
        return
    if not all_test_users and not users:
        console.print("[red]error[/red]: pass --all-test-users or at least one --user")
        raise typer.Exit(2)
    if out is None:
        console.print("[red]error[/red]: with --run pass --out FILE.parquet")
        raise typer.Exit(2)
    from booktower.evaluation.run_eval import load_trained, recommend_test
    from booktower.utils.atomic import atomic_write_parquet

    with friendly_errors():
        config, data, model = load_trained(run)
        frame = recommend_test(model, data, k, None if all_test_users else users, config.evaluation.user_chunk)
        atomic_write_parquet(frame, out)
    console.print(f"wrote {out} ({frame['user_id'].n_unique()} users x top-{k})")


def register(app: typer.Typer) -> None:
    app.command("baselines")(baselines_command)
    app.command("evaluate")(evaluate_command)
    app.command("report")(report_command)
    app.command("compare")(compare_command)
    app.command("recommend")(recommend_command)
