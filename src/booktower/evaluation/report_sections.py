"""Markdown sections of the report, each a pure function of already-read run files (but the note on the test
split's scorings, which reads RUN/test_scorings.json itself)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from booktower.evaluation.stats import ACTIVITY_BINS, mean_ci, named_rng, paired_compare, slice_table, with_activity
from booktower.evaluation.tables import markdown_table
from booktower.utils.nested import flatten
from booktower.utils.scorings import (
    TEST_SCORINGS,
    model_file_sha256,
    read_test_scorings,
    scoring_models,
    short,
)
from booktower.utils.wording import counted

if TYPE_CHECKING:
    from booktower.evaluation.report import RunFiles

log = logging.getLogger(__name__)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _ci_cell(per_user: pl.DataFrame | None, metric: str, mean: float | None, rng: np.random.Generator,
             samples: int) -> str:
    if per_user is None or metric not in per_user.columns:
        return _fmt(mean)
    value, low, high = mean_ci(per_user[metric].to_numpy(), rng, samples)
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def headline_section(files: RunFiles) -> str:
    """The test metrics of the model and each baseline; each interval resampled by a generator of its own
    (`named_rng`), so that adding or removing a baseline changes no other row."""
    ks = files.evaluation.ks
    k0, samples = ks[0], files.evaluation.bootstrap_samples
    others = [f"{name}@{k}" for k in ks[1:] for name in ("HR", "NDCG")]
    header = ["model", f"HR@{k0} (95% CI)", f"NDCG@{k0} (95% CI)", *others, f"MRR@{k0}", f"coverage@{ks[-1]}"]
    sources = {"**model**": (files.metrics.get("test", {}), files.per_user)}
    for name, parts in files.baselines.items():
        sources[name] = (parts.get("test", {}), files.baseline_per_user.get(name))
    rows = []
    for name, (metrics, per_user) in sources.items():
        cells = [_ci_cell(per_user, key, metrics.get(key), named_rng(files.seed, "headline", name, key), samples)
                 for key in (f"HR@{k0}", f"NDCG@{k0}")]
        rows.append([name, *cells,
                     *(_fmt(metrics.get(key)) for key in others), _fmt(metrics.get(f"MRR@{k0}")),
                     _fmt(metrics.get(f"coverage@{ks[-1]}"))])
    text = ["## Headline: test metrics beside the baselines\n", test_scorings_note(files.run_dir),
            markdown_table(header, rows), ""]
    if files.stale_baselines:
        text.append(f"_The baselines in {files.run_dir / 'baselines'} are left out: they were computed on another "
                    f"split ({files.stale_baselines}). `booktower baselines --config {files.run_dir / 'config.yaml'} "
                    f"-o {files.run_dir / 'baselines'}` recomputes them on this run's split._\n")
    elif not files.baselines:
        text.append("_No baselines in this run (`booktower baselines --config CFG -o RUN/baselines` adds them)._\n")
    if files.run_info.get("refit_on_validation"):
        epochs = files.run_info.get("best_epoch")
        text.append(f"_The model's test numbers come from a model refit on train + validation for the "
                    f"{epochs if epochs is not None else 'selected number of'} epochs early stopping chose "
                    "(`training.refit_on_validation`), as the baselines are fitted for the test; the validation "
                    "numbers below come from the selected checkpoint, trained on train only._\n")
    elif files.baselines and files.run_info.get("refit_on_validation") is False:
        text.append("_The model was trained on train only, while the baselines' test numbers come from fits on "
                    "train + validation: the model's last reads of every reader are missing from what it learnt, so "
                    "the comparison leans to the baselines (`training.refit_on_validation: true` refits the model "
                    "as they are fitted)._\n")
    validation = files.metrics.get("validation", {})
    if validation:
        keys = [f"{name}@{k}" for k in ks for name in ("HR", "NDCG")]
        text += ["Validation (model selection happens here, never on test):\n",
                 markdown_table(keys, [[_fmt(validation.get(k)) for k in keys]]), ""]
    return "\n".join(text)


def test_scorings_note(run_dir: Path) -> str:
    """How often, and by how many models, this folder's test split was scored (RUN/test_scorings.json). Above
    the numbers, since several models scored on one test split make a choice among them a choice on test. The
    report's model is the one the folder serves (RUN/model, by its sha256), whichever scored last."""
    try:
        entries = read_test_scorings(run_dir)
    except ValueError as exc:
        log.warning("the record of %s's test scorings cannot be read (the report says so too): %s", run_dir, exc)
        return f"> **The record of this folder's test scorings cannot be read**: {exc}\n"
    models = scoring_models(entries)
    current = model_file_sha256(run_dir)
    if len(models) == 1 and len(entries) > 1 and models[0] == current:
        lists = sum(1 for entry in entries if entry.get("headline") is None)  # `recommend --run`: lists, unscored
        written = f" and its lists written {counted(lists, 'time')}" if lists else ""
        return (f"_The test split was scored {counted(len(entries) - lists, 'time')} in this folder{written}, "
                "each time by this model "
                f"(`{short(models[0])}`; {run_dir / TEST_SCORINGS})._\n")
    if len(models) < 2:
        return ""
    earlier = sum(1 for entry in entries if entry.get("earlier_run"))
    rows = [_model_row(entries, model, current) for model in models]
    return "\n".join([
        f"> **The test split was scored by {len(models)} different models in this folder** ({len(entries)} "
        f"scorings{f', {earlier} of them by runs trained into it earlier' if earlier else ''}; "
        f"{run_dir / TEST_SCORINGS}). A model picked among them by their test numbers was selected on test, and "
        f"its numbers read better than a new test split would give. {_whose_numbers(current, models)}\n",
        markdown_table(["model (sha256)", "scorings", "by earlier runs", "commands", "first scored", "test (last)"],
                       rows), ""])


def _whose_numbers(current: str | None, models: list[str]) -> str:
    if current is None:
        return "This folder holds no model (model/model.safetensors), so none of them is this report's."
    if current not in models:
        return f"The folder's model `{short(current)}` is none of them: its test scoring was not recorded."
    return f"The numbers below are model `{short(current)}`'s, the one this folder serves."


def _model_row(entries: list[dict[str, Any]], model: str, current: str | None) -> list[str]:
    mine = [entry for entry in entries if str(entry.get("model_sha256")) == model]
    scored = [entry["headline"] for entry in mine if isinstance(entry.get("headline"), dict)]
    last = ", ".join(f"{key} {_fmt(value)}" for key, value in scored[-1].items()) if scored else "-"
    name = f"`{short(model)}`"
    if model == current:
        name += " (this report's)"
    elif all(entry.get("folder_model") is False for entry in mine):
        name += " (not saved in this folder)"
    commands = ", ".join(dict.fromkeys(str(entry.get("command")) for entry in mine))
    earlier = sum(1 for entry in mine if entry.get("earlier_run"))
    return [name, str(len(mine)), str(earlier), commands, str(mine[0].get("at", "-")), last]


def comparison_section(files: RunFiles) -> str:
    """The model against each baseline on the same users. A baseline without a per-user table cannot be paired:
    a note under the table names it, since the headline still lists it from metrics.json."""
    if not files.baselines:
        return ""
    title = "## Paired comparison with each baseline (same users, same held-out items)\n"
    if files.per_user is None:
        return "\n".join([title, f"_No paired comparison: {files.run_dir / 'per_user_test.parquet'} is missing "
                                  f"(`booktower evaluate --run {files.run_dir}` writes it)._\n"])
    metric = f"NDCG@{files.evaluation.ks[0]}"
    rows = [_paired_row(files, name, other, metric) for name, other in files.baseline_per_user.items()]
    header = ["baseline", f"model - baseline ({metric})", "95% CI", "p (paired bootstrap)", "p (Wilcoxon)",
              "users better / worse"]
    text = [title, markdown_table(header, rows), ""] if rows else [title]
    missing = [name for name in files.baselines if name not in files.baseline_per_user]
    if missing:
        folder = files.run_dir / "baselines"
        text.append(f"_Left out of this table: {', '.join(missing)}, which {'has' if len(missing) == 1 else 'have'} "
                    f"no per-user table ({', '.join(str(folder / name / 'per_user_test.parquet') for name in missing)}"
                    f" is missing), so {'its' if len(missing) == 1 else 'their'} users cannot be paired with the "
                    f"model's; the headline's numbers come from {folder / 'metrics.json'}. `booktower baselines "
                    f"--config {files.run_dir / 'config.yaml'} -o {folder} --models {','.join(missing)}` "
                    "recomputes them._\n")
    return "\n".join(text)


def _paired_row(files: RunFiles, name: str, other: pl.DataFrame, metric: str) -> list[str]:
    rng = named_rng(files.seed, "paired", name, metric)
    try:
        c = paired_compare(files.per_user, other, metric, rng, files.evaluation.bootstrap_samples)
    except ValueError as exc:
        return [name, "-", "-", "-", "-", str(exc).replace("|", "/")]
    return [name, f"{c.diff:+.4f}", f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]", f"{c.p_bootstrap:.3g}",
            f"{c.p_wilcoxon:.3g}", f"{c.wins} / {c.losses}"]


def slice_tables(per_user: pl.DataFrame, ks: list[int]) -> dict[str, pl.DataFrame]:
    columns = [c for k in (ks[0], ks[-1]) for c in (f"HR@{k}", f"NDCG@{k}") if c in per_user.columns]
    columns = list(dict.fromkeys(columns))
    frame = with_activity(per_user)
    tables = {"activity (train interactions)": slice_table(frame, "activity", columns, ["0", *[b[2] for b in ACTIVITY_BINS]])}
    if "popularity_group" in frame.columns:
        tables["held-out item popularity"] = slice_table(frame, "popularity_group", columns, ["head", "torso", "tail"])
    if "category" in frame.columns and frame["category"].null_count() < frame.height:
        tables["held-out item category"] = slice_table(frame.drop_nulls("category"), "category", columns).head(12)
    return tables


def slices_section(files: RunFiles) -> str:
    if files.per_user is None:
        return "## Slices\n\n_(no per_user_test.parquet)_\n"
    text = ["## Slices (test)\n",
            ("Head / torso / tail: the most popular items holding the first third of known interactions, the "
             "next third, and the rest.\n")]
    for title, table in slice_tables(files.per_user, files.evaluation.ks).items():
        header = [title, *table.columns[1:]]
        rows = [[_fmt(v) for v in row] for row in table.iter_rows()]
        text += [f"**{title}**\n", markdown_table(header, rows), ""]
    return "\n".join(text)


def diagnostics_section(diagnostics: dict[str, Any]) -> str:
    if not diagnostics:
        return "## Embedding diagnostics\n\n_(no diagnostics.json)_\n"
    rows = [[key, _fmt(value)] for key, value in flatten(diagnostics).items() if not key.startswith("covariance_gap.gaps")]
    notes = ("Alignment (lower = positives closer) and uniformity (lower = more spread) follow Wang & Isola "
             "(2020); anisotropy is the mean cosine of random pairs; neighbour overlap compares the share of "
             "same-category/author cosine neighbours with random neighbours.\n")
    return "\n".join(["## Embedding diagnostics\n", notes, markdown_table(["diagnostic", "value"], rows), ""])


def _clip(text: str, limit: int) -> str:
    """Table-safe text cut to `limit` characters; a cut is marked so a name is never silently shortened."""
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _book(row: dict[str, Any]) -> str:
    title = _clip(row.get("title") or row.get("item_id") or "?", 60)
    extra = " · ".join(_clip(str(v), 40) for v in (row.get("author"), row.get("category")) if v)
    mark = " **(held out)**" if row.get("held_out") else ""
    return f"{title}{' (' + extra + ')' if extra else ''}{mark}"


def _readers_counted(rates: dict[str, Any]) -> str:
    n, of = rates.get("n_users"), rates.get("of_users")
    if of is None:  # an audit.json from before the total was recorded
        return f"{n} readers"
    return f"all {n} test readers" if n == of else f"{n} of {of} test readers, drawn at random"


def audit_section(audit: dict[str, Any]) -> str:
    if not audit:
        return "## Recommendation audit\n\n_(no audit.json)_\n"
    rates = audit.get("rates", {})
    text = ["## Recommendation audit\n",
            "Match rates: share of top-{k} books whose category / author appears in the reader's history "
            "({n}): category {c}, author {a}.\n".format(
                k=rates.get("k"), n=_readers_counted(rates), c=_fmt(rates.get("category_match"), 3),
                a=_fmt(rates.get("author_match"), 3))]
    for example in audit.get("examples", []):
        history = example.get("recent_history", [])
        recommended = example.get("recommended", [])
        rows = [[_book(history[i]) if i < len(history) else "", f"{i + 1}. {_book(recommended[i])}"
                 if i < len(recommended) else ""] for i in range(max(len(history), len(recommended)))]
        text += [(f"**reader {example['user_id']}** ({example.get('n_history')} books read; held out: "
                  f"{_book(example.get('held_out', {}))})\n"),
                 markdown_table(["recent history (newest first)", "top recommendations"], rows), ""]
    return "\n".join(text)


def data_section(summary: dict[str, Any]) -> str:
    if not summary:
        return "## Data\n\n_(no data_summary.json)_\n"
    rows = [[key, _fmt(value)] for key, value in flatten(summary).items()
            if not isinstance(value, (list, dict)) and len(str(value)) < 120]
    warnings = [f"- **warning**: {text}" for text in summary.get("warnings") or []]
    return "\n".join(["## Data summary\n", *warnings, *([""] if warnings else []),
                      markdown_table(["field", "value"], rows[:40]), ""])


_KERNELS = {"c": "booktower's C kernels", "pytorch": "PyTorch (C kernels off or not built)",
            "unused": "PyTorch (C kernels not used on this device)"}


def run_section(info: dict[str, Any], epochs: pl.DataFrame | None) -> str:
    """Where and how the numbers above were made (run.json): the machine and versions matter because another CPU
    or library build rounds differently, and the speed is the machine's."""
    if not info:
        return "## Run\n\n_(no run.json)_\n"
    machine, versions = info.get("machine") or {}, info.get("versions") or {}
    hardware = ", ".join(str(v) for v in (machine.get("cpu"), machine.get("logical_cores") and
                                           f"{machine['logical_cores']} logical cores", machine.get("cpu_capability"))
                         if v)
    if machine.get("gpus"):
        hardware += f"; {', '.join(machine['gpus'])} (CUDA {machine.get('cuda')})"
    ensemble = info.get("ensemble") if isinstance(info.get("ensemble"), dict) else None
    if ensemble:  # combined, not trained here: the members' runs say how they trained
        rows = [["members", ", ".join(str(m) for m in ensemble.get("members") or [])],
                ["seeds", ", ".join(str(s) for s in ensemble.get("seeds") or [])],
                ["best epochs", ", ".join(str(e) for e in ensemble.get("best_epochs") or [])],
                ["members' training seconds", ", ".join(str(e) for e in ensemble.get("member_seconds") or [])],
                ["machine", hardware or None]]
    else:
        rows = [["seed", info.get("seed")], ["device", info.get("device")], ["machine", hardware or None],
                ["training step", info.get("training_step")],
                ["row-wise passes", _KERNELS.get(info.get("cpu_kernels"), info.get("cpu_kernels"))],
                ["epochs run (best)", f"{info.get('epochs_run')} ({info.get('best_epoch')})"
                 + (", stopped early" if info.get("stopped_early") else "")]]
    rows += [["versions", ", ".join(f"{k} {versions[k]}" for k in ("booktower", "torch", "python") if k in versions)],
             ["seconds", ", ".join(f"{k} {v}" for k, v in (info.get("timings_seconds") or {}).items())]]
    if epochs is not None and "examples_per_s" in epochs.columns and epochs.height:
        rates = epochs["examples_per_s"]
        rows.append(["training interactions/s per epoch", f"{rates.min():,.0f}-{rates.max():,.0f}"])
    if not ensemble:
        rows.append(["world size (processes)", world_size_cell(info)])
    rows += command_rows(info)
    return "\n".join(["## Run\n", markdown_table(["", ""], [[k, _fmt(v)] for k, v in rows]), ""])


def _segments(info: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in info.get("segments") or [] if isinstance(s, dict)]


def world_size_cell(info: dict[str, Any]) -> str | None:
    """How many processes trained, and through which world sizes a resumed run went: each process trains
    training.batch_size rows a step, so the global batch is that many times larger."""
    segments = _segments(info)
    sizes = [s["world_size"] for s in segments if isinstance(s.get("world_size"), int)]
    if not sizes and isinstance(info.get("world_size"), int):
        sizes = [info["world_size"]]
    if not sizes:
        return None
    text = str(sizes[-1])
    if max(sizes) > 1:
        text += " (each process trains training.batch_size rows a step: the global batch is world size x that)"
    resumes = len(segments) - 1
    if resumes > 0:
        text += f"; resumed {resumes} time{'s' if resumes > 1 else ''}"
        if len(set(sizes)) > 1:
            text += f", world sizes {' -> '.join(str(size) for size in sizes)}"
    return text


def shown_command(argv: list[str], world_size: Any = 1) -> str:
    """A recorded command as a reader would type it: a run.json written before segments holds sys.argv,
    whose booktower/__main__.py names neither `python -m` nor torchrun."""
    if argv and str(argv[0]).endswith("__main__.py"):
        launcher = (f"torchrun ({world_size} processes)" if isinstance(world_size, int) and world_size > 1
                    else "python")
        return " ".join([launcher, "-m", "booktower", *map(str, argv[1:])])
    return " ".join(map(str, argv))


def _epochs_span(numbers: Any) -> str | None:
    if not isinstance(numbers, list) or not numbers:
        return None
    return f"{numbers[0]}" if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"


def _segment_note(segment: dict[str, Any], last: bool) -> str:
    parts = [f"world size {segment.get('world_size')}", segment.get("device")]
    trained = _epochs_span(segment.get("epochs"))
    refit = _epochs_span(segment.get("refit_epochs"))
    parts.append(f"epochs {trained}" if trained else "no epoch trained")
    if refit:
        parts.append(f"refit epochs {refit}")
    if segment.get("ended_by"):
        parts.append(str(segment["ended_by"]).replace("_", " "))
    elif not last:  # never closed: killed (SIGKILL, a lost machine) after its last checkpointed epoch
        parts.append("ended without closing (killed)")
    return ", ".join(str(p) for p in parts if p)


def command_rows(info: dict[str, Any]) -> list[list[Any]]:
    """The command of each start and resume (run.json's segments), each with its world size, the epochs it
    trained and how it ended; a run.json without segments gives its one command."""
    segments = _segments(info)
    if not segments:
        return [["command", shown_command(info.get("command") or [], info.get("world_size"))]]
    rows = []
    for number, segment in enumerate(segments):
        label = "command" if number == 0 else f"resume {number}"
        command = shown_command(segment.get("command") or [], segment.get("world_size"))
        rows.append([label, f"{command} ({_segment_note(segment, number == len(segments) - 1)})"])
    return rows
