"""The optimiser policy: LazyAdam follows SparseAdam's arithmetic, schedules, and a clear error for AdamW."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from booktower.config.training import OptimizerConfig
from booktower.training.optim import LazyAdam, build_optimizers, lr_factor


@pytest.mark.parametrize("n_rows", [50, 5000])  # rows merged through the per-row marker / after a sort
@pytest.mark.parametrize("distinct", [False, True])  # repeated rows / one entry per row, in order
def test_lazy_adam_matches_sparse_adam(n_rows, distinct, kernels):
    torch.manual_seed(0)
    a, b = nn.Embedding(n_rows, 4, sparse=True), nn.Embedding(n_rows, 4, sparse=True)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = torch.optim.SparseAdam(a.parameters(), lr=0.01), LazyAdam(b.parameters(), lr=0.01)
    for _ in range(5):
        index = torch.randint(0, 50, (30,))  # repeated rows: the gradient must be coalesced
        if distinct:
            index = torch.unique(index)
        for table, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            (table(index) ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)


class _Model(nn.Module):
    def __init__(self, sparse: bool) -> None:
        super().__init__()
        self.table = nn.Embedding(10, 3, sparse=sparse)
        self.linear = nn.Linear(3, 1)


def test_hybrid_policy_splits_sparse_and_dense():
    opts = build_optimizers(_Model(sparse=True), OptimizerConfig(kind="hybrid"), total_steps=10)
    assert [type(o).__name__ for o in opts.optimizers] == ["LazyAdam", "AdamW"]
    assert len(opts.dense) == 2


def test_adamw_policy_refuses_sparse_tables_and_takes_dense_ones():
    with pytest.raises(ValueError, match="sparse_ids=false"):
        build_optimizers(_Model(sparse=True), OptimizerConfig(kind="adamw"), total_steps=10)
    opts = build_optimizers(_Model(sparse=False), OptimizerConfig(kind="adamw"), total_steps=10)
    assert [type(o).__name__ for o in opts.optimizers] == ["AdamW"]


def test_schedules():
    assert lr_factor("none", 5, 10, 0.1) == 1.0
    assert lr_factor("cosine", 0, 10, 0.1) == 1.0
    assert lr_factor("cosine", 5, 10, 0.1) == pytest.approx(0.5)
    assert lr_factor("linear_warmup", 0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor("linear_warmup", 9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor("linear_warmup", 55, 100, 0.1) == pytest.approx(0.5)
