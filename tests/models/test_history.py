"""History pooling against a naive per-reader loop (the pooled lookup deduplicates items; the maths must not
change), values and gradients."""

from __future__ import annotations

import pytest
import torch

from booktower.models.history import HistoryPooler
from booktower.models.spec import HistorySpec


@pytest.mark.parametrize("kind", ["mean", "recency"])
@pytest.mark.parametrize("sparse", [False, True])
def test_pooling_matches_a_naive_weighted_mean(kind, sparse):
    gen = torch.Generator().manual_seed(1)
    pooler = HistoryPooler(HistorySpec(kind, 6, 2.0, 1, 1), 4)
    table = torch.randn(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    history = torch.randint(-1, 9, (5, 6), generator=gen)
    history[0] = -1  # a reader without history pools to zeros
    history[1] = torch.tensor([3, 3, 3, -1, 3, 2])  # repeated items
    pooled = pooler(table, history, sparse)
    expected = []
    for row in history:
        ages = torch.arange(5, -1, -1, dtype=torch.float64)
        weights = (row >= 0).double() * (0.5 ** (ages / 2.0) if kind == "recency" else 1.0)
        vectors = table[row.clamp(min=0)] * weights[:, None]
        expected.append(vectors.sum(0) / weights.sum().clamp(min=1e-6))
    expected = torch.stack(expected)
    torch.testing.assert_close(pooled, expected)
    (grad,) = torch.autograd.grad((pooled**2).sum(), table)
    (reference,) = torch.autograd.grad((expected**2).sum(), table)
    torch.testing.assert_close(grad.to_dense(), reference)
