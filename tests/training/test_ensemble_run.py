"""`booktower ensemble`: finished runs become one run whose metrics are those of the members' summed scores
(validation by their selected checkpoints, test by their served models), which exports and serves as any run;
runs that do not share data, split, protocol or refit are refused with the reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.config import load_config
from booktower.data.errors import DataError
from booktower.data.types import Ragged
from booktower.evaluation import evaluate_split
from booktower.training.ensemble_run import build_ensemble_run
from booktower.training.pipeline import train_run
from booktower.training.run import load_run, selection_model
from booktower.training.scoring import score_fn_for

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import write_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """(dataset config, two finished runs of seeds 1 and 2, refit on train + validation)."""
    base = tmp_path_factory.mktemp("ensemble")
    config = write_dataset(base / "data", 16)
    dirs = []
    for seed in (1, 2):
        run = base / f"seed{seed}"
        train_run(load_config(config, ["training.epochs=2", f"seed={seed}", "training.refit_on_validation=true"]), run)
        dirs.append(run)
    return config, dirs


def _summed(models, data, part):
    """The members' logits (<p_u, p_v> / temperature) summed."""
    fns = [(score_fn_for(model, data, part), model.temperature) for model in models]
    return lambda users: sum(fn(users) / temperature for fn, temperature in fns)


def test_the_ensemble_run_scores_the_members_summed_selected_then_served(runs, tmp_path):
    _, members = runs
    out = tmp_path / "ens"
    evaluation = build_ensemble_run(members, out)
    loaded = [load_run(run) for run in members]
    data = loaded[0].data
    selected = [selection_model(run, trained.config, trained.model) for run, trained in zip(members, loaded)]
    expected = {"validation": evaluate_split(_summed(selected, data, "validation"), data, "validation", [10]),
                "test": evaluate_split(_summed([t.model for t in loaded], data, "test"), data, "test", [10])}
    for part, result in (("validation", evaluation.validation), ("test", evaluation.test)):
        assert result.metrics["NDCG@10"] == pytest.approx(expected[part].metrics["NDCG@10"], abs=1e-9)
        unread = np.isfinite(result.top_k.scores[:, :10])  # past a reader's unread books the order is arbitrary
        np.testing.assert_array_equal(result.top_k.items[:, :10][unread], expected[part].top_k.items[:, :10][unread])
    # the selected checkpoints and the refit models differ, so the two parts really read different weights
    assert not np.array_equal(_summed(selected, data, "test")(np.arange(4)).numpy(),
                              _summed([t.model for t in loaded], data, "test")(np.arange(4)).numpy())
    info = json.loads((out / "run.json").read_text())
    assert info["ensemble"]["members"] == [str(run) for run in members] and info["ensemble"]["seeds"] == [1, 2]


def test_the_command_writes_a_run_that_exports_and_serves(runs, tmp_path):
    from booktower.serving.service import Recommender

    _, members = runs
    out, bundle = tmp_path / "ens", tmp_path / "bundle"
    result = CliRunner().invoke(app, ["ensemble", *map(str, members), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 runs" in result.output and "An ensemble of 2 runs (seeds 1, 2" in (out / "report.md").read_text()
    result = CliRunner().invoke(app, ["export", "--run", str(out), "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    recommender = Recommender.from_bundle(bundle)
    single = load_run(members[0]).model.spec.output_dim
    assert recommender.parts.item_vectors.shape[1] == 2 * single
    user = pl.read_parquet(out / "vocab" / "users.parquet")[0, 0]
    assert len(recommender.for_user(user, k=3)) == 3
    # a new reader's vector (the user tower at request time) is the members' vectors side by side
    books = pl.read_parquet(out / "vocab" / "items.parquet")[:3, 0].to_list()
    history = Ragged.from_lists([recommender.parts.items.encode(books).tolist()])
    alone = []
    for number, run in enumerate(members):
        assert CliRunner().invoke(app, ["export", "--run", str(run), "-o", str(tmp_path / f"m{number}")]).exit_code == 0
        temperature = load_run(run).model.temperature  # each member's logits: its reader side over its temperature
        alone.append(Recommender.from_bundle(tmp_path / f"m{number}").encoder.user_vectors(history) / temperature)
    np.testing.assert_allclose(recommender.encoder.user_vectors(history), np.concatenate(alone, axis=1), atol=1e-5)
    assert [r.item_id for r in recommender.for_history(books, k=3)]  # served end to end


def test_runs_that_cannot_be_one_ensemble_are_refused_with_the_reason(runs, tmp_path):
    config, members = runs
    with pytest.raises(DataError, match="at least 2 runs"):
        build_ensemble_run(members[:1], tmp_path / "one")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        build_ensemble_run(members, busy)
    other_data = train_run(load_config(write_dataset(tmp_path / "other", 18), ["training.epochs=1"]), tmp_path / "o")
    with pytest.raises(DataError, match="vocab/users.parquet holds other ids .*other data or another split"):
        build_ensemble_run([members[0], other_data.run_dir], tmp_path / "e1")
    unrefit = tmp_path / "unrefit"
    train_run(load_config(config, ["training.epochs=1", "seed=3"]), unrefit)
    with pytest.raises(DataError, match="refit_on_validation is False here and True"):
        build_ensemble_run([members[0], unrefit], tmp_path / "e2")
    probe = tmp_path / "probe"
    train_run(load_config(config, ["training.epochs=1", "training.refit_on_validation=true"]), probe,
              validation_only=True)
    with pytest.raises(DataError, match=r"`--validation-only` run .*booktower train -o .*probe --resume"):
        build_ensemble_run([members[0], probe], tmp_path / "e3")
    with pytest.raises(DataError, match=r"itself an ensemble.*name its members instead"):
        build_ensemble_run([members[0], build_ensemble_run_dir(members, tmp_path / "nested")], tmp_path / "e4")
    pooling = tmp_path / "pooling"
    train_run(load_config(config, ["training.epochs=1", "seed=4", "training.refit_on_validation=true",
                                   "model.history.content=true"]), pooling)
    with pytest.raises(DataError, match=r"member 2 pools other book content.*member 2 = .*pooling"):
        build_ensemble_run([members[0], pooling], tmp_path / "e5")
    assert not any(path.name.startswith((".e", "e")) for path in tmp_path.iterdir() if path.name != "other")


def build_ensemble_run_dir(members, out):
    build_ensemble_run(members, out)
    return out


def test_members_trained_on_a_copy_of_the_files_elsewhere_combine(runs, tmp_path):
    """As on another machine: the same files under another path, prepared into another cache."""
    _, members = runs
    copy = write_dataset(tmp_path / "copy", 16)  # byte for byte the members' files
    elsewhere = tmp_path / "elsewhere"
    train_run(load_config(copy, ["training.epochs=1", "seed=5", "training.refit_on_validation=true"]), elsewhere)
    evaluation = build_ensemble_run([members[0], elsewhere], tmp_path / "ens")
    assert 0 < evaluation.test.metrics["NDCG@10"] <= 1


def test_the_same_model_twice_is_refused(runs, tmp_path):
    config, members = runs
    with pytest.raises(DataError, match=r"the same model as .*seed1.*Fix: ensemble runs trained from different seeds"):
        build_ensemble_run([members[0], members[0]], tmp_path / "twice")
    again = tmp_path / "seed1-again"  # one config and seed train byte for byte alike
    train_run(load_config(config, ["training.epochs=2", "seed=1", "training.refit_on_validation=true"]), again)
    with pytest.raises(DataError, match=r"the same config and seed 1"):
        build_ensemble_run([members[0], again], tmp_path / "alike")


def test_resuming_an_ensemble_says_what_it_is(runs, tmp_path):
    from booktower.training.pipeline import RunAlreadyFinished

    _, members = runs
    out = tmp_path / "ens"
    build_ensemble_run(members, out)
    with pytest.raises(RunAlreadyFinished, match=r"is an ensemble run .*it was not trained, so --resume has nothing"):
        train_run(load_config(out / "config.yaml"), out, resume=True)


def test_seeds_train_the_members_then_combine_them_and_a_rerun_keeps_them(runs, tmp_path):
    config, _ = runs
    out = tmp_path / "ens"
    args = ["ensemble", "--config", str(config), "--set", "training.epochs=1", "--set",
            "training.refit_on_validation=true", "--seeds", "3,4", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    members = [tmp_path / "ens-members" / f"seed-{seed}" for seed in (3, 4)]
    assert json.loads((out / "run.json").read_text())["ensemble"]["members"] == [str(m) for m in members]
    finished = [json.loads((m / "run.json").read_text())["finished"] for m in members]
    again = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "ens2"), "--members-dir", str(tmp_path / "ens-members")])
    assert again.exit_code == 0, again.output
    assert [json.loads((m / "run.json").read_text())["finished"] for m in members] == finished  # not retrained
    scored = [json.loads((folder / "metrics.json").read_text())["test"] for folder in (out, tmp_path / "ens2")]
    assert scored[0] == scored[1]
    one = CliRunner().invoke(app, ["ensemble", "--config", str(config), "--seeds", "3,3", "-o", str(tmp_path / "x")])
    assert one.exit_code == 2 and "two or more different seeds" in one.output
    neither = CliRunner().invoke(app, ["ensemble", "-o", str(tmp_path / "y")])
    assert neither.exit_code == 2 and "--seeds" in neither.output
    ignored = CliRunner().invoke(app, ["ensemble", *map(str, members), "--set", "seed=9", "-o", str(tmp_path / "z")])
    assert ignored.exit_code == 2 and "only --seeds does" in " ".join(ignored.output.split())


def test_a_bundle_named_as_a_member_is_told_to_name_its_run(runs, tmp_path):
    _, members = runs
    bundle = tmp_path / "bundle"
    assert CliRunner().invoke(app, ["export", "--run", str(members[1]), "-o", str(bundle)]).exit_code == 0
    result = CliRunner().invoke(app, ["ensemble", str(members[0]), str(bundle), "-o", str(tmp_path / "ens")])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "is a serving bundle" in said
    assert f"exported from {members[1]}: name {members[1]} instead" in said
    assert "--run" not in said and not (tmp_path / "ens").exists()


def test_members_trained_side_by_side_are_the_runs_trained_one_after_another(runs, tmp_path):
    config, _ = runs
    common = ["ensemble", "--config", str(config), "--set", "training.epochs=1", "--set",
              "training.refit_on_validation=true", "--seeds", "5,6"]
    in_turn = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "in-turn")])
    assert in_turn.exit_code == 0, in_turn.output
    side_by_side = CliRunner().invoke(app, [*common, "--jobs", "2", "-o", str(tmp_path / "side")])
    assert side_by_side.exit_code == 0, side_by_side.output
    for seed in (5, 6):
        weights = [(tmp_path / f"{name}-members" / f"seed-{seed}" / "model" / "model.safetensors").read_bytes()
                   for name in ("in-turn", "side")]
        assert weights[0] == weights[1]
        assert "test HR@10" in (tmp_path / "side-members" / f"seed-{seed}.log").read_text()  # its own output
    scored = [json.loads((tmp_path / name / "metrics.json").read_text())["test"] for name in ("in-turn", "side")]
    assert scored[0] == scored[1]
    lonely = CliRunner().invoke(app, ["ensemble", str(tmp_path / "in-turn-members" / "seed-5"),
                                      str(tmp_path / "in-turn-members" / "seed-6"), "--jobs", "2", "-o", str(tmp_path / "j")])
    assert lonely.exit_code == 2 and "only --seeds does" in " ".join(lonely.output.split())


def test_a_member_process_that_fails_is_named_with_its_log_and_the_rest_are_kept(runs, tmp_path):
    config, _ = runs
    members = tmp_path / "ens-members"
    members.mkdir()
    (members / "seed-8").write_text("a file where the member's run folder belongs")
    result = CliRunner().invoke(app, ["ensemble", "--config", str(config), "--set", "training.epochs=1", "--seeds",
                                      "7,8", "--jobs", "2", "-o", str(tmp_path / "ens")])
    said = "".join(result.output.split())  # long paths wrap anywhere
    assert result.exit_code == 2, result.output
    assert "".join(f"1 of 2 members failed: seed 8 stopped (exit 2; {members / 'seed-8.log'})".split()) in said
    assert "is a file, not a folder" in " ".join(result.output.split())  # the member's own error, from its log
    assert "finishedmembersarekept" in said and not (tmp_path / "ens").exists()
    assert json.loads((members / "seed-7" / "run.json").read_text()).get("finished")


def test_members_started_with_another_config_are_named_before_any_member_trains(runs, tmp_path):
    config, _ = runs
    def command(epochs: int) -> list[str]:
        return ["ensemble", "--config", str(config), "--set", f"training.epochs={epochs}", "--seeds", "11,12", "-o"]

    first = CliRunner().invoke(app, [*command(1), str(tmp_path / "ens")])
    assert first.exit_code == 0, first.output
    members = tmp_path / "ens-members"
    finished = {seed: json.loads((members / f"seed-{seed}" / "run.json").read_text())["finished"] for seed in (11, 12)}
    for jobs in ("1", "2"):
        changed = CliRunner().invoke(app, [*command(2), str(tmp_path / f"ens{jobs}"), "--members-dir", str(members),
                                           "--jobs", jobs])
        said = " ".join(changed.output.split())
        assert changed.exit_code == 2, changed.output
        assert "seeds 11, 12" in said and "training.epochs: 1 -> 2" in said and "new --members-dir" in said
        assert not (members / "seed-11.log").exists()  # refused before a member process started
    assert {seed: json.loads((members / f"seed-{seed}" / "run.json").read_text())["finished"]
            for seed in (11, 12)} == finished


def test_an_output_folder_holding_only_a_lock_file_counts_as_empty(runs, tmp_path):
    from booktower.utils.folder_lock import INSIDE_LOCK

    _, members = runs
    out = tmp_path / "ens"
    out.mkdir()
    (out / INSIDE_LOCK).write_text("")  # left by a command that locked inside the folder (its parent read-only)
    result = CliRunner().invoke(app, ["ensemble", *map(str, members), "-o", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file()
