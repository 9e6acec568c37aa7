"""Losses as small pure functions of tensors. Shapes: B rows (positive pairs), C candidates per row.

Every main loss takes a logit matrix whose column `positive[b]` is row b's positive and whose other columns are
negatives; `invalid` marks negatives to leave out (accidental hits); `log_q` (broadcastable to (B, C)) is the
log sampling probability that logQ correction subtracts from every logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from booktower import native


def corrected_logits(logits: torch.Tensor, log_q: torch.Tensor | None) -> torch.Tensor:
    """logQ correction (Yi et al., RecSys 2019): s(u, v) - log q(v), positives included."""
    return logits if log_q is None else logits - log_q


def _negative_mask(logits: torch.Tensor, positive: torch.Tensor, invalid: torch.Tensor | None) -> torch.Tensor:
    """(B, C) True where a column is a usable negative."""
    is_positive = torch.zeros_like(logits, dtype=torch.bool)
    is_positive[torch.arange(logits.shape[0], device=logits.device), positive] = True
    usable = ~is_positive
    return usable if invalid is None else usable & ~invalid


def sampled_softmax(logits: torch.Tensor, positive: torch.Tensor, invalid: torch.Tensor | None = None,
                    log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of -log softmax(corrected logits)[positive], accidental hits removed from the softmax."""
    z = corrected_logits(logits.float(), log_q)  # (B, C)
    if invalid is not None:
        drop = invalid.clone()
        drop[torch.arange(z.shape[0], device=z.device), positive] = False  # a row's positive always stays
        z = z.masked_fill(drop, float("-inf"))
    return F.cross_entropy(z, positive)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """mean_b(logsumexp(z_b) - z_b[positive_b]) with a hand-written backward (softmax - one-hot) / B.

    The forward's exponentials are the backward's softmax once divided by their row sums, so they are kept in
    one (B, C) buffer and turned into the gradient in place: one allocation and one exp pass per step instead
    of two each (on 2 CPU threads, 3.8-5.2 vs 7.0-7.9 ms for the loss with its logit product at B=1,024,
    C=1,152). The backward consumes that buffer, so a second backward through the same graph raises autograd's
    in-place error rather than returning a wrong gradient."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(z.shape[0], device=z.device)
        peak = z.amax(dim=1, keepdim=True)  # (B, 1) finite: a row's positive logit is never -inf
        exps = torch.sub(z, peak).exp_()  # (B, C); -inf logits give 0
        total = exps.sum(dim=1, keepdim=True)  # (B, 1)
        ctx.save_for_backward(exps, total, positive)
        lse = peak.squeeze(1) + total.squeeze(1).log()  # (B,)
        return (lse - z[rows, positive]).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        exps, total, positive = ctx.saved_tensors
        scale = grad / exps.shape[0]
        rows = torch.arange(exps.shape[0], device=exps.device)
        gradient = exps.mul_(scale / total)  # softmax * grad / B, in place
        gradient[rows, positive] -= scale
        return gradient, None


def softmax_cross_entropy(z: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(z, positive) (mean over rows) for float32 logits, computed in fewer passes."""
    return _SoftmaxCrossEntropy.apply(z, positive)


class _BlockedInBatchSoftmax(torch.autograd.Function):
    """`softmax_cross_entropy(query @ vectors.T + bias, positive)` with the `masked` (row, column) logits at
    -inf, computed a block of rows at a time: each block's logits are made, masked, exponentiated and turned
    into that block's gradient in place, and the gradients of `query` and `vectors` (all a block's softmax is
    needed for) are accumulated in the forward; the backward only scales them by the incoming gradient. Against
    one (B, C) logit matrix kept for the backward this saves its allocations and about half of its passes, and
    memory stays at one block however large the batch (amazon-books-2014, 2 CPU threads, same process: 33.0 vs
    36.8 ms per step at batch 1,024, 61.6 vs 75.8 ms at 2,048; blocks of 256 or 512 rows were no faster)."""

    @staticmethod
    def forward(ctx, query: torch.Tensor, vectors: torch.Tensor, bias: torch.Tensor | None, positive: torch.Tensor,
                masked_rows: torch.Tensor, masked_cols: torch.Tensor, block_rows: int) -> torch.Tensor:
        n = query.shape[0]
        if bool((masked_rows[1:] < masked_rows[:-1]).any()):  # the training task's hits come sorted by row
            order = torch.argsort(masked_rows)
            masked_rows, masked_cols = masked_rows[order], masked_cols[order]
        starts = list(range(0, n, block_rows))
        query_grad = torch.empty_like(query)  # (B, d)
        vectors_grad = torch.zeros_like(vectors)  # (C, d)
        total = query.new_zeros(())
        in_c = native.takes((query, vectors) + (() if bias is None else (bias,)), (positive, masked_rows, masked_cols))
        if not in_c:  # each block's slice of the masked coordinates (the C kernel finds its rows' own)
            bounds = torch.searchsorted(masked_rows, torch.tensor(starts + [n], device=query.device)).tolist()
            minus_inf = torch.tensor(float("-inf"), dtype=query.dtype, device=query.device)
        for k, start in enumerate(starts):
            q = query[start : start + block_rows]  # (b, d)
            if in_c:
                # bias, mask, max, exp, sum and gradient in one C pass per row over the product's output
                z = q @ vectors.T  # (b, C)
                total += native.softmax_block_(z, bias, positive[start : start + block_rows], start, masked_rows,
                                               masked_cols)
                torch.mm(z, vectors, out=query_grad[start : start + block_rows])
                vectors_grad.addmm_(z.T, q)
                continue
            rows = torch.arange(q.shape[0], device=q.device)
            z = q @ vectors.T if bias is None else torch.addmm(bias, q, vectors.T)  # (b, C)
            lo, hi = bounds[k], bounds[k + 1]
            if hi > lo:
                z.index_put_((masked_rows[lo:hi] - start, masked_cols[lo:hi]), minus_inf)
            pos = positive[start : start + block_rows]
            z_pos = z[rows, pos]  # (b,)
            peak = z.amax(dim=1, keepdim=True)  # (b, 1) finite: a row's positive is never masked
            exps = z.sub_(peak).exp_()
            sums = exps.sum(dim=1, keepdim=True)  # (b, 1)
            total += (peak.squeeze(1) + sums.squeeze(1).log() - z_pos).sum()
            grad = exps.div_(sums)  # d(summed loss)/dz = softmax - one-hot
            grad[rows, pos] -= 1.0
            torch.mm(grad, vectors, out=query_grad[start : start + block_rows])
            vectors_grad.addmm_(grad.T, q)
        ctx.save_for_backward(query_grad, vectors_grad)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        query_grad, vectors_grad = ctx.saved_tensors
        scale = grad / ctx.n
        return query_grad * scale, vectors_grad * scale, None, None, None, None, None


def blocked_in_batch_softmax(query: torch.Tensor, vectors: torch.Tensor, bias: torch.Tensor | None,
                             positive: torch.Tensor, masked: tuple[torch.Tensor, torch.Tensor] | None = None,
                             block_rows: int = 1024) -> torch.Tensor:
    """Mean over rows b of -log softmax_c(q_b . v_c + bias_c)[positive_b], the `masked` (rows, columns) entries
    left out of the softmax; float32 query (B, d), vectors (C, d), bias (C,) or None. The CPU path of the
    training task's in-batch softmax; at most `block_rows` x C logits exist at a time."""
    if masked is None:
        empty = torch.zeros(0, dtype=torch.int64, device=query.device)
        masked = (empty, empty)
    return _BlockedInBatchSoftmax.apply(query, vectors, bias, positive, masked[0], masked[1], block_rows)


def sampled_bce(logits: torch.Tensor, positive: torch.Tensor, invalid: torch.Tensor | None = None,
                log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy over every (positive or usable negative) pair, averaged over those pairs."""
    z = corrected_logits(logits.float(), log_q)  # (B, C)
    rows = torch.arange(z.shape[0], device=z.device)
    negatives = _negative_mask(z, positive, invalid)  # (B, C)
    pos_loss = F.softplus(-z[rows, positive]).sum()  # -log sigmoid(z+)
    neg_loss = (F.softplus(z) * negatives).sum()  # -log(1 - sigmoid(z-))
    return (pos_loss + neg_loss) / (z.shape[0] + negatives.sum())


def cosine_contrastive(cosines: torch.Tensor, positive: torch.Tensor, invalid: torch.Tensor | None = None,
                       margin: float = 0.5) -> torch.Tensor:
    """mean(1 - cos(u, v+)) + mean over usable negatives of relu(cos(u, v-) - margin). Takes raw cosines."""
    c = cosines.float()  # (B, C)
    rows = torch.arange(c.shape[0], device=c.device)
    negatives = _negative_mask(c, positive, invalid)
    pos_term = (1.0 - c[rows, positive]).mean()
    neg_term = (F.relu(c - margin) * negatives).sum() / negatives.sum().clamp(min=1)
    return pos_term + neg_term


def mimic_loss(augmented: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """DAT adaptive-mimic loss ||a - stopgrad(p)||^2: reduced over the dimension by `reduction` (mean or sum),
    then averaged over the positive pairs. Only `augmented` receives a gradient."""
    squared = (augmented.float() - target.detach().float()) ** 2  # (B, d)
    if reduction == "mean":
        per_pair = squared.mean(dim=1)
    elif reduction == "sum":
        per_pair = squared.sum(dim=1)
    else:
        raise ValueError(f"unknown mimic reduction {reduction!r}; choose mean or sum")
    return per_pair.mean()


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance matrix of the rows of x. (n, d) -> (d, d); needs n >= 2."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (x.shape[0] - 1)


def category_alignment(vectors: torch.Tensor, categories: torch.Tensor, min_items: int = 2) -> torch.Tensor:
    """DAT Category Alignment Loss: sum over the other categories i of ||C(major) - C(S_i)||_F^2.

    The major category is the one with the most items in the batch (ties: the smallest id). Items with category
    -1 and categories with fewer than `min_items` items are skipped. No usable pair of categories gives 0.
    """
    known = categories >= 0
    cats, x = categories[known], vectors[known].float()  # (n,), (n, d)
    if cats.numel() == 0:
        return vectors.sum() * 0.0
    ids, counts = torch.unique(cats, return_counts=True)
    major = ids[torch.argmax(counts)]  # argmax returns the first maximum: the smallest id among ties
    if counts.max() < max(min_items, 2):
        return vectors.sum() * 0.0
    major_cov = covariance(x[cats == major])  # (d, d)
    loss = vectors.sum() * 0.0
    for cat, count in zip(ids.tolist(), counts.tolist()):
        if cat == int(major) or count < max(min_items, 2):
            continue
        loss = loss + ((major_cov - covariance(x[cats == cat])) ** 2).sum()
    return loss
