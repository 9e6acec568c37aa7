"""Layer building blocks against PyTorch's own: the L2 normalisation's gradient, ID lookups with unknown rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from booktower.models.batches import PaddedBags, gather_ragged, pad_ragged
from booktower.models.layers import BagEmbedding, IdEmbedding, all_known, l2_normalize


def test_l2_normalize_matches_f_normalize_in_value_and_gradient():
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(7, 5, dtype=torch.float64)
    ours = l2_normalize(x)
    (ours * grad).sum().backward()
    ours_grad = x.grad.clone()
    x.grad = None
    theirs = F.normalize(x, dim=-1)
    (theirs * grad).sum().backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_grad, x.grad)
    assert torch.autograd.gradcheck(lambda t: l2_normalize(t), (x.detach().requires_grad_(),))


def test_l2_normalize_of_a_row_under_eps_divides_by_eps_like_f_normalize():
    x = torch.tensor([[1e-14, -2e-14], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    grad = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    (l2_normalize(x) * grad).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    (F.normalize(x, dim=-1) * grad).sum().backward()
    torch.testing.assert_close(ours, x.grad)
    torch.testing.assert_close(ours[0], grad[0] / 1e-12)  # the clamped norm is a constant


def test_id_lookup_skips_its_mask_only_when_every_id_is_known():
    table = IdEmbedding(5, 3, sparse=False)
    assert all_known(torch.tensor([0, 4, 2])) and not all_known(torch.tensor([0, -1]))
    assert all_known(torch.zeros(0, dtype=torch.int64))
    rows = table(torch.tensor([3, -1, 0]))
    torch.testing.assert_close(rows[1], torch.zeros(3))
    torch.testing.assert_close(rows[0], table.table.weight[3])
    torch.testing.assert_close(table(torch.tensor([3, 0])), table.table.weight[[3, 0]])


def test_pad_ragged_holds_each_row_left_aligned_with_mean_weights():
    offsets, values = torch.tensor([0, 2, 2, 5]), torch.tensor([7, 3, 4, 4, 9])  # rows [7, 3], [], [4, 4, 9]
    padded, weights = pad_ragged(offsets, values)
    assert padded.tolist() == [[7, 3, 0], [0, 0, 0], [4, 4, 9]]
    torch.testing.assert_close(weights, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


def test_padded_bags_give_the_bag_means_and_their_gradients():
    torch.manual_seed(0)
    offsets, values = torch.tensor([0, 2, 2, 5, 6]), torch.tensor([7, 3, 4, 4, 9, 1])
    rows = torch.tensor([3, 0, 2, 1, 0])
    sparse_bag, dense_bag = BagEmbedding(10, 4, sparse=True), BagEmbedding(10, 4, sparse=False)
    dense_bag.load_state_dict(sparse_bag.state_dict())
    ragged = gather_ragged(offsets, values, rows)
    padded_values, padded_weights = pad_ragged(offsets, values)
    padded = PaddedBags(padded_values.index_select(0, rows), padded_weights.index_select(0, rows))
    expected, got = sparse_bag(ragged), dense_bag(padded)
    torch.testing.assert_close(got, expected)
    table = sparse_bag.bag.weight.detach()
    torch.testing.assert_close(got[2], (2 * table[4] + table[9]) / 3)  # a repeated token counts twice
    assert torch.equal(got[3], torch.zeros(4))  # the empty bag
    upstream = torch.randn_like(expected)
    (expected * upstream).sum().backward()
    (got * upstream).sum().backward()
    torch.testing.assert_close(dense_bag.bag.weight.grad, sparse_bag.bag.weight.grad.to_dense())
    with pytest.raises(ValueError, match="dense table gradients"):
        sparse_bag(padded)


def test_dense_id_lookup_gives_the_embedding_gradient_with_repeated_and_unknown_ids():
    """With dense gradients the lookup is an index_select (capturable in a CUDA graph); its gradient is what
    F.embedding's is: each id's upstream rows summed, unknown (-1) ids contributing nothing."""
    torch.manual_seed(0)
    table = IdEmbedding(6, 3, sparse=False)
    ids = torch.tensor([[2, 2], [-1, 5]])
    upstream = torch.randn(2, 2, 3)
    (table(ids) * upstream).sum().backward()
    expected = torch.zeros(6, 3)
    expected[2] = upstream[0, 0] + upstream[0, 1]
    expected[5] = upstream[1, 1]
    torch.testing.assert_close(table.table.weight.grad, expected)
