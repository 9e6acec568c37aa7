"""Losses as small pure functions of tensors. Shapes: B rows (positive pairs), C candidates per row.

Every main loss takes a logit matrix whose column `positive[b]` is row b's positive and whose other columns are
negatives; `invalid` marks negatives to leave out (accidental hits); `log_q` (broadcastable to (B, C)) is the
log sampling probability that logQ correction subtracts from every logit.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from booktower import native

log = logging.getLogger(__name__)


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


def _row_logsumexp(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """logsumexp_c(z[b, c] - bias[c]) in bias's dtype (float32 for bf16 logits): (B, C), (C,) -> (B,)."""
    return torch.logsumexp(z.to(bias.dtype) - bias, dim=1)


def _scaled_softmax(z: torch.Tensor, bias: torch.Tensor, lse: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale * softmax_c(z - bias) from the rows' logsumexp, in z's dtype: (B, C)."""
    return (torch.exp(z.to(bias.dtype) - bias - lse.unsqueeze(1)) * scale).to(z.dtype)


class CompiledOnCuda:
    """`fn` through torch.compile when its first argument is on a CUDA device, eager otherwise. Compiled, each of
    the functions above is one fused kernel reading the bf16 logits once (a row reduction; an element-wise chain).
    The loss they replace made a float32 copy and four more (B, C) passes, ~18 of the step's 24 GPU milliseconds
    at batch 32,768 on an H200, where the step went from 31.0 ms to 14.8 (41 ms with these two run eagerly). A
    compiler that fails (no Triton, no C compiler) costs one warning and the eager path, never the run."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.compiled = None
        self.enabled = True

    def __call__(self, *args, compiled: bool = True):
        if not (compiled and self.enabled and args[0].is_cuda):
            return self.fn(*args)
        if self.compiled is None:
            # Static kernels for the first shape, one dynamic-shape recompile when another comes (an epoch's
            # last batch): on an H200 at batch 32,768, 14.8 ms per step against 17.4 with dynamic=True.
            self.compiled = torch.compile(self.fn)
        try:
            return self.compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to the same eager maths
            log.warning("torch.compile of %s failed (%s: %s); using eager PyTorch", self.fn.__name__,
                        type(error).__name__, error)
            self.enabled = False
            return self.fn(*args)


_compiled_row_logsumexp = CompiledOnCuda(_row_logsumexp)
_compiled_scaled_softmax = CompiledOnCuda(_scaled_softmax)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """mean_b(logsumexp_c(z_b - bias) - (z_b - bias)[positive_b]) with a hand-written backward
    (softmax - one-hot) / B, for logits z of any float dtype (bf16 under CUDA autocast), computed in bias's
    dtype: the corrected logits z - bias are never stored, only z and the rows' logsumexp; the backward
    recomputes the softmax from them and returns the gradient in z's dtype, which the logit product's backward
    takes."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, bias: torch.Tensor, positive: torch.Tensor, compiled: bool) -> torch.Tensor:
        rows = torch.arange(z.shape[0], device=z.device)
        with torch.autocast(z.device.type, enabled=False):
            lse = _compiled_row_logsumexp(z, bias, compiled=compiled)  # (B,) finite: the positive is never -inf
        ctx.save_for_backward(z, bias, lse, positive)
        ctx.compiled = compiled
        return (lse - (z[rows, positive].to(bias.dtype) - bias[positive])).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, bias, lse, positive = ctx.saved_tensors
        scale = grad.to(bias.dtype) / z.shape[0]
        gradient = _compiled_scaled_softmax(z, bias, lse, scale, compiled=ctx.compiled)  # (B, C); -inf gives 0
        rows = torch.arange(z.shape[0], device=z.device)
        gradient[rows, positive] -= scale.to(gradient.dtype)
        return gradient, None, None, None


def softmax_cross_entropy(z: torch.Tensor, positive: torch.Tensor, bias: torch.Tensor | None = None,
                          compiled: bool = True) -> torch.Tensor:
    """F.cross_entropy(z.float() - bias, positive) (mean over rows) in two passes over z, which may be bf16;
    bias (C,) defaults to 0. Masked logits are -inf in z. `compiled`: fuse each pass with torch.compile where z
    is on a CUDA device."""
    dtype = torch.promote_types(z.dtype, torch.float32)  # bf16 logits: float32 maths; float64 stays float64
    bias = torch.zeros(z.shape[1], dtype=dtype, device=z.device) if bias is None else bias.to(dtype)
    return _SoftmaxCrossEntropy.apply(z, bias, positive, compiled)


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
