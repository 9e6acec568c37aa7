"""`booktower recommend --bundle`: wrong reader flags and values past the serving limits are one `error:` line
(exit 2) naming the flag, checked before the bundle is loaded; several --user give one list each."""

from __future__ import annotations

import pytest

MAX_HISTORY = 500  # the serving layer's default `max_history` (the tests below import what they check)


@pytest.mark.parametrize("k", ["201", "99999999999999999999"])
def test_k_past_the_serving_limit_is_refused_naming_the_limit(cli, tmp_path, k) -> None:
    outcome = cli("recommend", "--bundle", tmp_path, "--user", "u1", "--k", k)
    assert outcome.refused(f"--k {k} is out of range", "[1, 200]", "pass --k 200 or less")


def test_k_help_states_the_serving_limit(cli) -> None:
    assert cli("recommend", "--help").says("at most 200 printed from a bundle")


def test_user_and_history_together_are_refused(cli, tmp_path) -> None:
    outcome = cli("recommend", "--bundle", tmp_path, "--user", "u1", "--history", "b1,b2")
    assert outcome.refused("pass --user or --history, not both")


def test_a_history_without_ids_says_it_is_empty(cli, tmp_path) -> None:
    outcome = cli("recommend", "--bundle", tmp_path, "--history", " , ,")
    assert outcome.refused("--history ' , ,' holds no item ids")
    assert not outcome.says("exactly one")  # the old, misleading message: only --history was given


def test_a_history_past_the_serving_limit_is_refused_with_its_length(cli, tmp_path) -> None:
    history = ",".join(f"b{i}" for i in range(MAX_HISTORY + 1))
    outcome = cli("recommend", "--bundle", tmp_path, "--history", history)
    assert outcome.refused("--history holds 501 item ids; at most 500 are accepted")


def test_run_only_flags_are_refused_with_a_bundle(cli, tmp_path) -> None:
    outcome = cli("recommend", "--bundle", tmp_path, "--all-test-users")
    assert outcome.refused("--all-test-users goes with --run")


def test_history_is_refused_with_a_run(cli, tmp_path) -> None:
    outcome = cli("recommend", "--run", tmp_path, "--history", "b1", "--out", tmp_path / "top.parquet")
    assert outcome.refused("--history, --all-users, --category and --max-per-author go with --bundle")


def test_several_users_get_one_list_each_in_the_order_given(cli, bundle) -> None:
    directory, users, _ = bundle
    outcome = cli("recommend", "--bundle", directory, "--k", "2",
                  "--user", users[3], "--user", users[1], "--user", users[3])
    assert outcome.code == 0, outcome.output
    titles = [line.strip() for line in outcome.output.splitlines() if line.strip().startswith("top-2 for")]
    assert titles == [f"top-2 for {users[3]}", f"top-2 for {users[1]}"]  # a repeated user is answered once


def test_an_unknown_user_among_several_fails_before_any_list_is_printed(cli, bundle) -> None:
    directory, users, _ = bundle
    outcome = cli("recommend", "--bundle", directory, "--user", users[0], "--user", "NOPE")
    assert outcome.refused("reader 'NOPE' is not in this bundle")
    assert "top-50 for" not in outcome.output


def test_a_history_of_known_books_is_answered(cli, bundle) -> None:
    directory, _, items = bundle
    outcome = cli("recommend", "--bundle", directory, "--history", f" {items[0]}, ,{items[1]} ", "--k", "3")
    assert outcome.code == 0, outcome.output
    assert outcome.says("top-3 for anonymous reader")


def test_parse_history_keeps_non_empty_ids_in_order() -> None:
    from booktower.cli._bundle_query import parse_history

    assert parse_history(" b2, ,b1,,b3 ") == ["b2", "b1", "b3"]
    assert parse_history(" , ,") == []


def test_bundle_queries_keep_the_first_of_repeated_users() -> None:
    from booktower.cli._bundle_query import MAX_K, bundle_queries

    queries = bundle_queries(["u2", "u1", "u2"], None, 10)
    assert [(q.label, q.user, q.history) for q in queries] == [("u2", "u2", None), ("u1", "u1", None)]
    (anonymous,) = bundle_queries([], "b1,b2", MAX_K)
    assert anonymous.user is None and anonymous.history == ["b1", "b2"]


def test_an_empty_user_is_refused_as_empty(cli, tmp_path) -> None:
    outcome = cli("recommend", "--bundle", tmp_path, "--user", " ")
    assert outcome.refused("--user is empty")
