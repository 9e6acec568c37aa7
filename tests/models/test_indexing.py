"""distinct_rows against torch.unique on both of its paths."""

from __future__ import annotations

import pytest
import torch

from booktower.models.indexing import MARKER_ROWS_PER_ENTRY, distinct_rows


@pytest.mark.parametrize("n_rows", [40, 40 * MARKER_ROWS_PER_ENTRY + 1])  # per-row marker / sort
def test_distinct_rows_matches_torch_unique(n_rows):
    index = torch.randint(0, 40, (40,), generator=torch.Generator().manual_seed(2))
    distinct, inverse = distinct_rows(index, n_rows)
    expected, expected_inverse = torch.unique(index, return_inverse=True)
    assert torch.equal(distinct, expected)
    assert torch.equal(inverse, expected_inverse)
    assert torch.equal(distinct[inverse], index)


def test_distinct_rows_of_an_empty_index():
    distinct, inverse = distinct_rows(torch.zeros(0, dtype=torch.int64), 10)
    assert distinct.numel() == 0 and inverse.numel() == 0
