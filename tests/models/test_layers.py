"""Layer building blocks against PyTorch's own: the L2 normalisation's gradient, ID lookups with unknown rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from booktower.models.layers import IdEmbedding, all_known, l2_normalize


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
