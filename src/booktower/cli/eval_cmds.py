"""`booktower baselines | evaluate | report | compare | recommend`: thin wrappers over booktower.evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from booktower.cli import _paths
from booktower.cli._bundle_query import MAX_K, bundle_queries
from booktower.cli._common import (
    CONFIG_OPTION,
    SET_OPTION,
    cli_config,
    console,
    fail,
    friendly_errors,
    setup_logging,
)
from booktower.cli._ranges import at_least

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

RUN_OPTION = typer.Option(..., "--run", "-r", help="A run directory written by `booktower train`.",
                          callback=_paths.run_dir)


def baselines_command(
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    models: str = typer.Option("pop,itemknn,ease,als,bpr", "--models", help="Comma-separated baselines."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", callback=_paths.output_dir,
                                    help="Where metrics.json and per-user tables go."),
) -> None:
    """Fit each baseline on train (validation metrics) and on train + validation (test metrics)."""
    from booktower.data.prepare import prepare
    from booktower.evaluation.baselines import run_baselines
    from booktower.evaluation.tables import print_metric_table

    setup_logging()
    cfg = cli_config(config, set_)
    names = baseline_names(models)
    with friendly_errors():
        data, _ = prepare(cfg.data)
        try:
            table = run_baselines(names, cfg.baselines, data, cfg.evaluation.ks, cfg.seed, output_dir,
                                  chunk=cfg.evaluation.user_chunk, progress=cfg.training.progress)
        except ValueError as exc:
            fail(str(exc))
    print_metric_table({name: parts["test"] for name, parts in table.items()}, cfg.evaluation.ks, console,
                       title="test (fit on train + validation)")
    console.print(f"wrote {output_dir / 'metrics.json'}")


def baseline_names(models: str) -> list[str]:
    """`--models` as a list of known names, checked before the data is prepared (that can take minutes)."""
    from booktower.evaluation.baselines import BASELINES

    names = list(dict.fromkeys(n.strip() for n in models.split(",") if n.strip()))
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        what = f"names unknown baselines {unknown}" if unknown else "names no baseline"
        fail(f"--models {models!r} {what}. Fix: a comma-separated list of {', '.join(BASELINES)}")
    return names


def evaluate_command(
    run: Path = RUN_OPTION,
    report: bool = typer.Option(True, help="Re-render report.md."),
    allow_changed_data: bool = typer.Option(
        False, "--allow-changed-data",
        help="Score the run even though its input files or split differ from what it was trained on; "
             "metrics.json then records the change under `data_changed`. Its readers and books must still be "
             "the run's, numbered alike (a model has no row for a new one)."),
) -> None:
    """Re-score a trained run on validation and test; rewrite metrics.json, per-user tables, diagnostics.
    Refused when the data changed since training (run.json's input sha256s, split.json's split hash). Each
    scoring is recorded in RUN/test_scorings.json, with a warning when the folder's test split has been scored
    by more than one model."""
    from booktower.evaluation.report import write_report
    from booktower.evaluation.run_eval import reevaluate_run
    from booktower.utils.folder_lock import run_lock

    setup_logging()
    with friendly_errors(), run_lock(run, "evaluate"):  # refused while a training or another evaluate writes it
        config, evaluation = reevaluate_run(run, allow_changed_data)
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


class Split(str, Enum):
    test = "test"
    validation = "validation"


def compare_command(
    runs: list[Path] | None = typer.Argument(None, help="RUN_A RUN_B (run or baseline directories).",
                                             callback=_paths.run_dir),
    run_opt: list[Path] | None = typer.Option(None, "--run", "-r", help="Alternative to the arguments.",
                                              callback=_paths.run_dir),
    metric: str = typer.Option("NDCG@10", help="Per-user ranking metric to compare, where higher is better: "
                                               "HR, Recall, Precision, NDCG, MRR or MAP at a K the runs scored "
                                               "(e.g. NDCG@20)."),
    samples: int = typer.Option(2000, callback=at_least(1), help="Bootstrap resamples (1 or more)."),
    seed: int = typer.Option(0, callback=at_least(0), help="Seed of the bootstrap (0 or more)."),
    split: Split = typer.Option(Split.test, "--split",
                              help="Which per-user table to pair: test, or validation (to choose between "
                                   "candidates, `train --validation-only` runs included, before the test)."),
) -> None:
    """Paired comparison of two runs on the same split: mean difference, 95% CI, bootstrap and Wilcoxon p."""
    import json

    import numpy as np

    from booktower.evaluation.compare import compare_runs

    setup_logging()
    chosen = list(runs or []) + list(run_opt or [])
    if len(chosen) != 2:
        fail("give exactly two runs: booktower compare RUN_A RUN_B")
    with friendly_errors():
        try:
            result = compare_runs(chosen[0], chosen[1], metric, np.random.default_rng(seed), samples, split.value)
        except ValueError as exc:
            fail(str(exc))
    console.print(f"A = {chosen[0]}\nB = {chosen[1]}")
    console.print(f"{metric} ({split.value}): A {result.mean_a:.4f}  B {result.mean_b:.4f}  A - B {result.diff:+.4f} "
                  f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}]  p(bootstrap) {result.p_bootstrap:.3g}  "
                  f"p(Wilcoxon) {result.p_wilcoxon:.3g}  users A better/worse (higher {metric} is better) "
                  f"{result.wins}/{result.losses} of {result.n_users}")
    print(json.dumps(result.as_dict()))


def recommend_command(
    run: Optional[Path] = typer.Option(None, "--run", "-r", callback=_paths.run_dir,
                                       help="A run directory (masked test top-K to a file)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", callback=_paths.bundle_dir,
                                          help="A bundle from `booktower export` (print top-K)."),
    all_test_users: bool = typer.Option(False, "--all-test-users", help="With --run: every user with a test item."),
    all_users: bool = typer.Option(False, "--all-users",
                                   help="With --bundle and --out: every reader the bundle knows."),
    users: Optional[list[str]] = typer.Option(None, "--user", help="Raw user id (repeatable: a list each)."),
    history: Optional[str] = typer.Option(None, "--history", help="With --bundle: ID,ID,... for an anonymous reader."),
    categories: Optional[list[str]] = typer.Option(None, "--category",
                                                   help="With --bundle: only books with this tag (repeatable), "
                                                        "as the API's ?category= filters."),
    max_per_author: Optional[int] = typer.Option(None, "--max-per-author", callback=at_least(1),
                                                 help="With --bundle: at most this many books by one author in a "
                                                      "list, as the API's ?max_per_author= caps them."),
    k: int = typer.Option(50, "--k", callback=at_least(1),
                           help=f"List length, 1 or more: at most {MAX_K} printed from a bundle (the serving "
                                "limit), at most the catalogue size written to --out."),
    out: Optional[Path] = typer.Option(None, "--out", callback=_paths.output_file,
                                       help="The file of lists (user_id, rank, item_id, score, ...), written as CSV "
                                            "or Parquet by its extension: .csv or .parquet. With --run: the masked "
                                            "test lists; with --bundle: what the API serves each --user (or "
                                            "--all-users), ranked exactly."),
) -> None:
    """Recommend: from a bundle (titles and scores), or a run's masked test top-K lists (the metrics' source)."""
    setup_logging()
    if (run is None) == (bundle is None):
        fail("pass exactly one of --run RUN or --bundle BUNDLE")
    if bundle is not None:
        if all_test_users:
            fail("--all-test-users goes with --run. Fix: with --bundle pass --all-users --out FILE for every reader")
        if out is not None or all_users:
            from booktower.cli._bundle_lists import write_bundle_lists

            write_bundle_lists(bundle, users or [], all_users, history, categories or [], k, out, max_per_author)
            return
        _recommend_from_bundle(bundle, users or [], history, k, categories or [], max_per_author)
    else:
        if history is not None or all_users or categories or max_per_author is not None:
            fail("--history, --all-users, --category and --max-per-author go with --bundle (what a bundle serves). "
                 "Fix: pass "
                 "--bundle BUNDLE, or --user / --all-test-users with --run")
        _recommend_from_run(run, users or [], all_test_users, k, out)


def _recommend_from_bundle(bundle: Path, users: list[str], history: Optional[str], k: int,
                           categories: list[str], max_per_author: Optional[int] = None) -> None:
    """Every query is answered before any is printed: an unknown reader fails the command, not a table."""
    from booktower.cli.serve_cmds import print_rows, query_rows

    queries = bundle_queries(users, history, k)
    with friendly_errors():
        answers = [(query, query_rows(bundle, query, k, categories, max_per_author)) for query in queries]
    for query, rows in answers:
        print_rows(rows, f"top-{k} for {query.label}")


def _recommend_from_run(run: Path, users: list[str], all_test_users: bool, k: int,
                        out: Optional[Path]) -> None:
    if not all_test_users and not users:
        fail("pass --all-test-users or at least one --user")
    if out is None:
        fail("with --run pass --out FILE.csv or --out FILE.parquet")
    write = table_writer(out)  # before the model is loaded and scored
    from booktower.evaluation.run_eval import load_trained, recommend_test
    from booktower.utils.scorings import model_file_sha256, read_test_scorings

    with friendly_errors():
        read_test_scorings(run)  # a damaged record refuses now, not after the scoring
        config, data, model = load_trained(run)
        model_sha256 = model_file_sha256(run)  # the model just loaded (load_trained reads it last), before scoring
        if k > data.n_items:
            fail(f"--k {k} is larger than the run's catalogue ({data.n_items} books). "
                 f"Fix: pass --k {data.n_items} or less")
        frame = recommend_test(model, data, k, None if all_test_users else users, config.evaluation.user_chunk)
        write(frame, out)
    _record_test_lists(run, model_sha256, config.evaluation.ks)
    console.print(f"wrote {out} ({frame['user_id'].n_unique()} users x top-{k})")


def _record_test_lists(run: Path, model_sha256: str | None, ks: list[int]) -> None:
    """The test lists, from which the test metrics follow: recorded as a reading of the test split (unscored).
    `recommend` only reads the run, so a record it cannot write (a read-only folder, a full disk) is a warning."""
    from booktower.data.errors import DataError
    from booktower.utils.scorings import TEST_SCORINGS, record_test_scoring

    try:
        record_test_scoring(run, "recommend", model_sha256, None, ks)
    except (OSError, DataError) as exc:
        log.warning(
            "the lists were written, but this reading of the test split could not be recorded in %s (%s): "
            "it is missing from the record of the folder's test scorings", run / TEST_SCORINGS, exc)


def table_writer(out: Path) -> Callable[[pl.DataFrame, Path], None]:
    """The writer `--out`'s extension names: a file called .csv must hold CSV, not Parquet bytes."""
    from booktower.utils.atomic import atomic_write_csv, atomic_write_parquet

    writers = {".csv": atomic_write_csv, ".parquet": atomic_write_parquet}
    suffix = out.suffix.lower()
    if suffix not in writers:
        what = f"extension {out.suffix!r}" if out.suffix else "no extension"
        stem = out.name.split(".")[0] or "lists"  # x.csv.gz -> x, not x.csv.csv
        fail(f"--out {out} has {what}; the format is chosen by it. "
             f"Fix: name the file {stem}.csv (CSV) or {stem}.parquet (Parquet)")
    return writers[suffix]


def register(app: typer.Typer) -> None:
    app.command("baselines")(baselines_command)
    app.command("evaluate")(evaluate_command)
    app.command("report")(report_command)
    app.command("compare")(compare_command)
    app.command("recommend")(recommend_command)
