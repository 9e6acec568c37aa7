"""The block-maximum top-k must return exactly what torch.topk returns."""

import pytest
import torch

import numpy as np

from booktower.evaluation.ranking import block_max_top_k, inner_products, known_items, rank_top_k, top_k
from booktower.data.types import Interactions


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("n_items, k, width", [(1000, 10, 64), (1037, 50, 8), (1037, 5, 16), (300, 5, 256),
                                               (97, 20, 8)])
def test_block_max_top_k_matches_torch_topk(n_items: int, k: int, width: int, strided: bool) -> None:
    gen = torch.Generator().manual_seed(n_items)
    scores = torch.randn(33, n_items, generator=gen)  # continuous scores: no ties, so the ids must agree
    scores[0, :] = float("-inf")  # a fully masked row still returns k entries
    scores[1, : n_items // 2] = float("-inf")
    values, indices = block_max_top_k(scores.clone(), k, width, strided=strided)
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
    strided = torch.zeros(2, 4096)  # 256 strided blocks of 16: block 3 holds columns 3, 259, 515, ...
    strided[:, 3 + 256 * torch.arange(10)] = torch.arange(10, 0, -1, dtype=torch.float32)
    values, indices = block_max_top_k(strided, 10, 16, strided=True)
    assert indices.tolist() == [[3 + 256 * i for i in range(10)]] * 2


def test_winners_past_the_last_full_block_are_found() -> None:
    scores = torch.zeros(1, 1000)  # 62 blocks of 16 cover 992 columns; 992..999 are the tail
    scores[0, 995] = 5.0
    scores[0, 999] = 4.0
    for strided in (False, True):
        _, indices = block_max_top_k(scores, 2, 16, strided=strided)
        assert indices.tolist() == [[995, 999]]


def test_top_k_on_a_large_cpu_catalogue_matches_torch_topk() -> None:
    scores = torch.randn(5, 20_000, generator=torch.Generator().manual_seed(1))
    values, indices = top_k(scores.clone(), 50)
    reference = torch.topk(scores, 50, dim=1)
    assert torch.equal(values, reference.values) and torch.equal(indices, reference.indices)


def test_inner_products_match_torch_and_are_fresh() -> None:
    gen = torch.Generator().manual_seed(2)
    queries, items_t = torch.randn(7, 12, generator=gen), torch.randn(12, 30, generator=gen)
    product = inner_products(queries, items_t)
    assert torch.allclose(product, queries @ items_t, atol=1e-5)
    product.fill_(0.0)  # the evaluator masks in place: that must not touch the inputs
    assert queries.abs().sum() > 0 and items_t.abs().sum() > 0


def test_parallel_cpu_ranking_equals_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks on two workers write the same lists as one worker; the thread setting is restored."""
    import booktower.evaluation.ranking as ranking

    monkeypatch.setattr(ranking, "CPU_CHUNK_BYTES", 4 * 20_000 * 3)  # 3 users per chunk: many chunks
    gen = torch.Generator().manual_seed(3)
    user_vecs, items_t = torch.randn(40, 8, generator=gen), torch.randn(8, 20_000, generator=gen)
    rng = np.random.default_rng(0)
    seen = Interactions(np.repeat(np.arange(40), 30), rng.integers(0, 20_000, 1200), np.zeros(1200, dtype=np.int64))
    mask = known_items(40, seen)
    users = np.arange(40)
    threads = torch.get_num_threads()
    try:
        results = []
        for workers in (1, 2):
            torch.set_num_threads(workers)
            results.append(rank_top_k(lambda u: inner_products(user_vecs[u], items_t), users, mask, 10, 20_000,
                                      truth=mask))
            assert torch.get_num_threads() == workers
    finally:
        torch.set_num_threads(threads)
    one, two = results
    assert np.array_equal(one.items, two.items) and np.array_equal(one.truth_rank, two.truth_rank)
    reference = torch.topk(user_vecs @ items_t, 40, dim=1)  # masked items must never appear
    for u in range(40):
        assert not set(one.items[u]) & set(mask.row(u))
        expected = [i for i in reference.indices[u].tolist() if i not in set(mask.row(u))][:10]
        assert one.items[u].tolist() == expected


def test_top_k_on_cpu_is_torch_topk() -> None:
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    values, indices = top_k(scores, 60)  # k above the catalogue size is cut to it
    assert indices.shape == (4, 50)
    assert torch.equal(indices, torch.topk(scores, 50, dim=1).indices)


def test_cpu_chunks_run_on_one_worker_per_thread_with_single_threaded_kernels() -> None:
    import threading
    import time

    seen: list[tuple[int, int]] = []

    def score(users: np.ndarray) -> torch.Tensor:
        seen.append((threading.get_ident(), torch.get_num_threads()))
        time.sleep(0.002)  # long enough that both workers take chunks
        return torch.zeros(len(users), 20_000)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rank_top_k(score, np.arange(60), known_items(60), 5, 20_000, chunk=4)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    chunk_calls = seen[1:]  # the first call is the one-row probe on the caller's thread
    assert len(chunk_calls) == 15
    assert len({ident for ident, _ in chunk_calls}) == 2
    assert {n for _, n in chunk_calls} == {1}
