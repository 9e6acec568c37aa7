"""Books without a category at the configured level (item_category -1) score like any other: their per-user
rows carry a null category, whichever reader comes first (a crash once, when the first one had none)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from booktower.evaluation.evaluator import _item_columns


def test_a_first_held_out_book_without_a_category_gets_a_null_one():
    data = SimpleNamespace(category_names=["Poetry", "Drama"], item_category=np.array([-1, 0, 1, -1]))
    columns = {series.name: series for series in _item_columns(data, np.array([0, 1, 3, 2]), np.array([5, 4, 3, 2]))}
    assert columns["category"].to_list() == [None, "Poetry", None, "Drama"]
    assert columns["item_popularity"].to_list() == [5, 4, 2, 3]
