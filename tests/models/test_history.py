"""History pooling against a naive per-reader loop (the pooled lookup deduplicates items; the maths must not
change), values and gradients."""

from __future__ import annotations

import pytest
import torch

from booktower.models.history import HistoryPooler
from booktower.models.spec import HistorySpec


@pytest.mark.parametrize("kind", ["mean", "recency"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # the C kernels take float32 sparse tables
def test_pooling_matches_a_naive_weighted_mean(kind, sparse, dtype, kernels):
    gen = torch.Generator().manual_seed(1)
    pooler = HistoryPooler(HistorySpec(kind, 6, 2.0, 1, 1), 4)
    table = torch.randn(9, 4, generator=gen, dtype=dtype, requires_grad=True)
    history = torch.randint(-1, 9, (5, 6), generator=gen)
    history[0] = -1  # a reader without history pools to zeros
    history[1] = torch.tensor([3, 3, 3, -1, 3, 2])  # repeated items
    pooled = pooler(table, history, sparse)
    expected = []
    for row in history:
        ages = torch.arange(5, -1, -1, dtype=dtype)
        weights = (row >= 0).to(dtype) * (0.5 ** (ages / 2.0) if kind == "recency" else 1.0)
        vectors = table[row.clamp(min=0)] * weights[:, None]
        expected.append(vectors.sum(0) / weights.sum().clamp(min=1e-6))
    expected = torch.stack(expected)
    torch.testing.assert_close(pooled, expected)
    (grad,) = torch.autograd.grad((pooled**2).sum(), table)
    (reference,) = torch.autograd.grad((expected**2).sum(), table)
    torch.testing.assert_close(grad.to_dense(), reference)


@pytest.mark.parametrize("n_items", [9, 5000])  # distinct items found through a per-row marker / by a sort
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pooling_gradient_reaches_each_distinct_item_once(n_items, dtype, kernels):
    pooler = HistoryPooler(HistorySpec("recency", 4, 1.0, 1, 1), 3)
    table = torch.randn(n_items, 3, dtype=dtype, requires_grad=True)
    history = torch.tensor([[-1, 2, 7, 2], [-1, -1, -1, 7], [-1, -1, -1, -1]])
    pooled = pooler(table, history, True)
    torch.testing.assert_close(pooled[1], table[7].detach())
    torch.testing.assert_close(pooled[2], torch.zeros(3, dtype=dtype))  # no history: zeros
    pooled.sum().backward()
    assert table.grad._nnz() == 2  # one sparse row per distinct item, before any merge
    grad = table.grad.coalesce()
    assert grad.indices()[0].tolist() == [2, 7]
    # row 0 weighs its entries 0.25, 0.5, 1 (ages 2, 1, 0) over 1.75; row 1 gives item 7 weight 1
    torch.testing.assert_close(grad.values()[:, 0], torch.tensor([1.25 / 1.75, 0.5 / 1.75 + 1.0], dtype=dtype))


def test_pooling_a_batch_without_any_history_gives_zeros():
    pooler = HistoryPooler(HistorySpec("mean", 3, 1.0, 1, 1), 2)
    table = torch.randn(5, 2, requires_grad=True)
    pooled = pooler(table, torch.full((2, 3), -1), False)
    torch.testing.assert_close(pooled, torch.zeros(2, 2))
    pooled.sum().backward()
    assert not table.grad.any()
