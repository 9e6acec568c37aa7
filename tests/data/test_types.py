"""The data layer's containers."""

from __future__ import annotations

import numpy as np

from booktower.data.types import Ragged


def test_by_row_groups_values_by_row_keeping_each_rows_order() -> None:
    grouped = Ragged.by_row(np.array([2, 0, 2, 0, 3]), np.array([7, 5, 8, 6, 9]), n_rows=5)
    assert [grouped.row(r).tolist() for r in range(5)] == [[5, 6], [], [7, 8], [9], []]
    assert grouped.values.dtype == np.int64
    empty = Ragged.by_row(np.zeros(0, np.int64), np.zeros(0, np.int64), n_rows=2)
    assert empty.offsets.tolist() == [0, 0, 0]
