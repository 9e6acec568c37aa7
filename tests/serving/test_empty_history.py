"""An empty history is the caller's mistake, said as such: not an unknown-id error pointing at pruning."""

from __future__ import annotations

import pytest

from booktower.data.vocab import UnknownIdError

from .conftest import toy_recommender


@pytest.mark.parametrize("empty", [[], ()])
def test_an_empty_history_is_a_value_error_naming_it(empty) -> None:
    rec, _ = toy_recommender()
    for call in (rec.for_history, rec.answer_history):
        with pytest.raises(ValueError, match="history is empty") as caught:
            call(empty, 5)
        assert not isinstance(caught.value, UnknownIdError)
        assert "pruned" not in str(caught.value)


def test_a_history_of_unknown_books_still_names_them() -> None:
    rec, _ = toy_recommender()
    with pytest.raises(UnknownIdError, match=r"none of the history's 2 books is in this bundle"):
        rec.for_history(["gone-1", "gone-2"], 5)
