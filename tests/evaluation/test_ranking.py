"""The block-maximum top-k must return exactly what torch.topk returns."""

import pytest
import torch

from booktower.evaluation.ranking import block_max_top_k, top_k


@pytest.mark.parametrize("n_items, k, width", [(1000, 10, 64), (1037, 50, 32), (300, 5, 256), (97, 20, 8)])
def test_block_max_top_k_matches_torch_topk(n_items: int, k: int, width: int) -> None:
    gen = torch.Generator().manual_seed(n_items)
    scores = torch.randn(33, n_items, generator=gen)  # continuous scores: no ties, so the ids must agree
    scores[0, :] = float("-inf")  # a fully masked row still returns k entries
    scores[1, : n_items // 2] = float("-inf")
    values, indices = block_max_top_k(scores.clone(), k, width)
    reference = torch.topk(scores, k, dim=1, sorted=True)
    assert torch.equal(values, reference.values)
    assert torch.equal(indices[2:], reference.indices[2:])
    assert torch.equal(scores.gather(1, indices), values)


def test_all_top_k_in_one_block() -> None:
    """The worst case for block pruning: every winner sits in the same block."""
    scores = torch.zeros(2, 4096)
    scores[:, 256:266] = torch.arange(10, 0, -1, dtype=torch.float32)
    values, indices = block_max_top_k(scores, 10, 256)
    assert indices.tolist() == [list(range(256, 266))] * 2
    assert values[0].tolist() == list(range(10, 0, -1))


def test_top_k_on_cpu_is_torch_topk() -> None:
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    values, indices = top_k(scores, 60)  # k above the catalogue size is cut to it
    assert indices.shape == (4, 50)
    assert torch.equal(indices, torch.topk(scores, 50, dim=1).indices)
