"""Losses against naive reference implementations and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from booktower.training import losses


def _case(seed: int = 0, b: int = 4, c: int = 7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g, dtype=torch.float64)
    positive = torch.randint(0, c, (b,), generator=g)
    invalid = torch.rand(b, c, generator=g) < 0.3
    log_q = torch.log(torch.rand(c, generator=g, dtype=torch.float64) * 0.5 + 0.01)
    return logits, positive, invalid, log_q


def naive_softmax(logits, positive, invalid, log_q):
    total = 0.0
    for i in range(logits.shape[0]):
        terms = []
        for j in range(logits.shape[1]):
            if j != positive[i] and invalid is not None and invalid[i, j]:
                continue
            z = float(logits[i, j]) - (float(log_q[j]) if log_q is not None else 0.0)
            terms.append((j, z))
        denominator = sum(math.exp(z) for _, z in terms)
        z_pos = dict(terms)[int(positive[i])]
        total += -(z_pos - math.log(denominator))
    return total / logits.shape[0]


def naive_bce(logits, positive, invalid, log_q):
    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            z = float(logits[i, j]) - (float(log_q[j]) if log_q is not None else 0.0)
            sigmoid = 1.0 / (1.0 + math.exp(-z))
            if j == positive[i]:
                total += -math.log(sigmoid)
            elif invalid is None or not invalid[i, j]:
                total += -math.log(1.0 - sigmoid)
            else:
                continue
            count += 1
    return total / count


@pytest.mark.parametrize("use_log_q", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_softmax_matches_naive(use_log_q, use_mask, seed):
    logits, positive, invalid, log_q = _case(seed)
    invalid = invalid if use_mask else None
    log_q = log_q if use_log_q else None
    got = losses.sampled_softmax(logits, positive, invalid, log_q)
    assert float(got) == pytest.approx(naive_softmax(logits, positive, invalid, log_q), rel=1e-5)


@pytest.mark.parametrize("use_log_q", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_bce_matches_naive(use_log_q, use_mask, seed):
    logits, positive, invalid, log_q = _case(seed)
    invalid = invalid if use_mask else None
    log_q = log_q if use_log_q else None
    got = losses.sampled_bce(logits, positive, invalid, log_q)
    assert float(got) == pytest.approx(naive_bce(logits, positive, invalid, log_q), rel=1e-5)


def test_masking_the_positive_column_is_ignored():
    logits, positive, invalid, _ = _case(3)
    invalid[torch.arange(4), positive] = True  # the positive is a user's own item: never masked away
    assert torch.isfinite(losses.sampled_softmax(logits, positive, invalid))


def test_category_alignment_by_hand():
    # Category 0 (major, 3 items) and category 1 (2 items), category 2 has one item (skipped), -1 ignored.
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0], [1.0, 1.0], [3.0, 1.0], [9.0, 9.0], [5.0, 5.0]])
    cats = torch.tensor([0, 0, 0, 1, 1, 2, -1])
    # Major: mean (1, 1); deviations (-1,-1), (1,-1), (0,2): cov = [[2, 0], [0, 6]] / 2 = [[1, 0], [0, 3]].
    # Category 1: mean (2, 1); deviations (-1, 0), (1, 0): cov = [[2, 0], [0, 0]] / 1.
    # ||[[1,0],[0,3]] - [[2,0],[0,0]]||_F^2 = 1 + 9 = 10.
    assert float(losses.category_alignment(x, cats, min_items=2)) == pytest.approx(10.0)
    assert float(losses.category_alignment(x, cats, min_items=3)) == 0.0
    assert float(losses.category_alignment(x, torch.full((7,), -1))) == 0.0


def test_mimic_loss_reductions_and_stop_gradient():
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    p = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    assert float(losses.mimic_loss(a, p, "sum").detach()) == pytest.approx((5.0 + 2.0) / 2)
    loss = losses.mimic_loss(a, p, "mean")
    assert float(loss.detach()) == pytest.approx((2.5 + 1.0) / 2)
    loss.backward()
    assert p.grad is None and a.grad is not None


def test_cosine_contrastive_by_hand():
    cos = torch.tensor([[0.9, 0.7, 0.1], [0.2, 0.8, 0.6]])
    positive = torch.tensor([0, 1])
    # positives: (1 - 0.9) + (1 - 0.8) -> mean 0.15; negatives above 0.5: 0.7 -> 0.2, 0.6 -> 0.1, over 4 -> 0.075
    assert float(losses.cosine_contrastive(cos, positive, None, 0.5)) == pytest.approx(0.15 + 0.075)


@pytest.mark.parametrize("with_bias", [False, True])
def test_softmax_cross_entropy_matches_f_cross_entropy_with_masked_logits(with_bias):
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    z[1, 4] = z[3, 0] = float("-inf")  # masked accidental hits
    bias = torch.randn(9, generator=gen) if with_bias else None
    positive = torch.tensor([0, 1, 2, 3, 4, 5])
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    from booktower.training.losses import softmax_cross_entropy

    mine = softmax_cross_entropy(a, positive, bias)
    reference = torch.nn.functional.cross_entropy(b - (0.0 if bias is None else bias.double()), positive)
    (2.0 * mine).backward()
    (2.0 * reference).backward()
    torch.testing.assert_close(mine, reference)
    torch.testing.assert_close(a.grad, b.grad)


def test_softmax_cross_entropy_of_bf16_logits_is_the_float_loss_of_the_same_values():
    # Under CUDA autocast the logits arrive in bf16: the loss reads them as they are (no float32 copy) and
    # returns a bf16 gradient, equal to the float32 loss's gradient of the same (rounded) values up to bf16.
    from booktower.training.losses import softmax_cross_entropy

    gen = torch.Generator().manual_seed(4)
    z = (3.0 * torch.randn(16, 40, generator=gen)).bfloat16()
    z[2, 7] = float("-inf")
    bias = torch.randn(40, generator=gen)
    positive = torch.randint(0, 40, (16,), generator=gen)
    positive[2] = 3
    low, high = z.clone().requires_grad_(), z.float().requires_grad_()
    loss = softmax_cross_entropy(low, positive, bias)
    reference = torch.nn.functional.cross_entropy(high - bias, positive)
    loss.backward()
    reference.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(low.grad.float(), high.grad, rtol=1e-2, atol=1e-4)
    assert low.grad[2, 7] == 0


def test_softmax_cross_entropy_second_backward_gives_the_same_gradient():
    # The backward recomputes the softmax from the kept logits, so a retained graph can be walked twice.
    from booktower.training.losses import softmax_cross_entropy

    z = torch.randn(4, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64).requires_grad_()
    positive = torch.tensor([1, 0, 6, 3])
    loss = softmax_cross_entropy(z, positive)
    first = torch.autograd.grad(loss, z, retain_graph=True)[0]
    torch.testing.assert_close(first, torch.autograd.grad(torch.nn.functional.cross_entropy(z, positive), z)[0])
    torch.testing.assert_close(torch.autograd.grad(loss, z)[0], first)


@pytest.mark.slow  # torch.compile's first call builds C++ kernels (~30 s on these CPUs)
def test_the_compiled_passes_equal_the_eager_ones():
    # On CUDA each pass runs through torch.compile; the same functions compiled for the CPU check that the
    # traced maths is the eager maths (the GPU run of benchmarks/gpu.sh compares the losses end to end).
    from booktower.training import losses

    gen = torch.Generator().manual_seed(6)
    z = (4.0 * torch.randn(33, 70, generator=gen)).bfloat16()
    z[0, :5] = float("-inf")
    bias = torch.randn(70, generator=gen)
    lse = losses._row_logsumexp(z, bias)
    compiled_lse = torch.compile(losses._row_logsumexp, dynamic=True)(z, bias)
    torch.testing.assert_close(compiled_lse, lse)
    scale = torch.tensor(0.25)
    softmax = torch.compile(losses._scaled_softmax, dynamic=True)(z, bias, lse, scale)
    torch.testing.assert_close(softmax, losses._scaled_softmax(z, bias, lse, scale))
    torch.testing.assert_close(softmax.float().sum(dim=1), torch.full((33,), 0.25), rtol=2e-2, atol=0)


def test_a_failing_compiler_falls_back_to_the_eager_pass(monkeypatch, caplog):
    from booktower.training import losses

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no triton here")
        return call

    wrapped = losses.CompiledOnCuda(losses._row_logsumexp)
    monkeypatch.setattr(torch, "compile", broken)

    class FakeCuda(torch.Tensor):  # only `is_cuda` is asked before the compiled call
        @property
        def is_cuda(self):
            return True

    z = torch.randn(3, 5)
    expected = losses._row_logsumexp(z, torch.zeros(5))
    with caplog.at_level("WARNING"):
        got = wrapped(z.as_subclass(FakeCuda), torch.zeros(5))
    torch.testing.assert_close(got.as_subclass(torch.Tensor), expected)
    assert "no triton here" in caplog.text and not wrapped.enabled


@pytest.mark.parametrize("block_rows", [1, 3, 64])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: the C kernel's path where built
@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: logits 100s apart, so exponentials underflow to 0
def test_blocked_in_batch_softmax_matches_the_dense_loss(block_rows, with_bias, dtype, scale, kernels):
    from booktower.training.losses import blocked_in_batch_softmax, softmax_cross_entropy

    gen = torch.Generator().manual_seed(11)
    query = (scale * torch.randn(7, 4, generator=gen, dtype=dtype)).requires_grad_()
    vectors = torch.randn(10, 4, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(10, generator=gen, dtype=dtype) if with_bias else None
    positive = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    rows, cols = torch.tensor([5, 0, 0, 6]), torch.tensor([9, 3, 8, 0])  # unsorted, two in row 0
    blocked = blocked_in_batch_softmax(query, vectors, bias, positive, (rows, cols), block_rows)
    (3.0 * blocked).backward()
    q2, v2 = query.detach().clone().requires_grad_(), vectors.detach().clone().requires_grad_()
    z = q2 @ v2.T + (bias if with_bias else 0.0)
    z = z.index_put((rows, cols), torch.tensor(float("-inf"), dtype=z.dtype))
    dense = softmax_cross_entropy(z, positive)
    (3.0 * dense).backward()
    # the dense loss recomputes the softmax as exp(z - logsumexp), which rounds by an ulp of the logits (~1e-5
    # relative in float32 at logits of 100s) where the blocked one divides exp(z - max) by the row's sum
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(blocked, dense, **tolerance)
    torch.testing.assert_close(query.grad, q2.grad, **tolerance)
    torch.testing.assert_close(vectors.grad, v2.grad, **tolerance)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU by benchmarks/gpu.sh)")
def test_the_cuda_loss_compiled_equals_the_eager_loss():
    from booktower.training.losses import softmax_cross_entropy

    gen = torch.Generator().manual_seed(7)
    z = (4.0 * torch.randn(300, 1000, generator=gen)).bfloat16().cuda()
    z[5, 17] = float("-inf")
    bias, positive = torch.randn(1000, generator=gen).cuda(), torch.randint(0, 1000, (300,), generator=gen).cuda()
    positive[5] = 3
    results = []
    for compiled in (False, True):
        leaf = z.clone().requires_grad_()
        loss = softmax_cross_entropy(leaf, positive, bias, compiled=compiled)
        loss.backward()  # the backward runs on autograd's CUDA device thread
        results.append((loss.detach(), leaf.grad))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1].float(), results[0][1].float(), rtol=1e-2, atol=1e-6)
    from booktower.training import losses

    assert losses._compiled_row_logsumexp.enabled and losses._compiled_scaled_softmax.enabled  # no fallback
