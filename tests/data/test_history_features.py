"""A reader's history aggregates (data/featurize.py): the same numbers for a training reader and a served one, and
a book without a training count (added to a bundle after training) counted as a read but not as popularity 0."""

from __future__ import annotations

import numpy as np

from booktower.data.featurize import user_numeric_columns
from booktower.data.types import Ragged


def test_history_aggregates_by_hand():
    histories = Ragged.from_lists([[0, 1], [2], []])
    popularity = np.array([3.0, 0.0, 7.0])
    timestamps = np.array([0, 2 * 86400, 5], dtype=np.int64)
    columns = user_numeric_columns(3, histories, timestamps, popularity, None, [])
    np.testing.assert_array_equal(columns["train_interactions"], [2, 1, 0])
    np.testing.assert_allclose(columns["active_span_days"], [2.0, 0.0, np.nan])
    np.testing.assert_allclose(columns["mean_log_item_popularity"], [np.log1p(3) / 2, np.log1p(7), np.nan])


def test_a_book_without_a_training_count_is_a_read_of_unknown_popularity():
    histories = Ragged.from_lists([[0, 3], [3, 3], [0]])
    popularity = np.array([3.0, 0.0, 7.0, np.nan])  # book 3 was added after training
    columns = user_numeric_columns(3, histories, None, popularity, None, [])
    np.testing.assert_array_equal(columns["train_interactions"], [2, 2, 1])
    # reader 0 reads like reader 2 (a book of popularity 3), not like a reader of half-obscure books
    np.testing.assert_allclose(columns["mean_log_item_popularity"], [np.log1p(3), np.nan, np.log1p(3)])
