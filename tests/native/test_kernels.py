"""The C kernels against the PyTorch computations they replace, their index checks, and their off switches."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from booktower import native
from booktower.training.optim import LazyAdam


@pytest.fixture
def kernels_on(monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "1")
    if native.library() is None:
        pytest.skip("booktower's C kernels could not be built here (no working C compiler)")


def _train_table(n_rows: int, index_batches: list[torch.Tensor], switch: str, monkeypatch, sparse: bool = True
                 ) -> tuple:
    monkeypatch.setenv(native.ENV_SWITCH, switch)
    torch.manual_seed(0)
    table = nn.Embedding(n_rows, 5, sparse=sparse)
    opt = LazyAdam(table.parameters(), lr=0.01)
    for index in index_batches:
        opt.zero_grad()
        (table(index) ** 2).sum().backward()
        opt.step()
    state = opt.state[table.weight]
    return table.weight.detach(), state["exp_avg"], state["exp_avg_sq"], state["step"]


@pytest.mark.parametrize("n_rows", [40, 100_000])  # rows in the cache / far more rows than entries
@pytest.mark.parametrize("layout", ["repeated", "distinct", "shuffled"])
def test_lazy_adam_kernel_matches_the_pytorch_path(kernels_on, monkeypatch, n_rows, layout):
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(4):
        index = torch.randint(0, 40, (60,), generator=gen)
        if layout != "repeated":
            index = torch.unique(index)
        if layout == "shuffled":
            index = index[torch.randperm(len(index), generator=gen)]
        batches.append(index)
    c_path = _train_table(n_rows, batches, "1", monkeypatch)
    torch_path = _train_table(n_rows, batches, "0", monkeypatch)
    for c_value, torch_value in zip(c_path[:3], torch_path[:3]):
        torch.testing.assert_close(c_value, torch_value, rtol=1e-5, atol=1e-6)  # FMA and operand order
    assert c_path[3] == torch_path[3] == 4


def test_lazy_adam_kernel_takes_dense_table_gradients_too(kernels_on, monkeypatch):
    """A dense table gradient: its non-zero rows go through the same kernel."""
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randint(0, 30, (25,), generator=gen) for _ in range(3)]
    c_path = _train_table(30, batches, "1", monkeypatch, sparse=False)
    torch_path = _train_table(30, batches, "0", monkeypatch, sparse=False)
    for c_value, torch_value in zip(c_path[:3], torch_path[:3]):
        torch.testing.assert_close(c_value, torch_value, rtol=1e-5, atol=1e-6)
    untouched = torch.ones(30, dtype=torch.bool)
    untouched[torch.cat(batches)] = False
    assert not c_path[1][untouched].any()  # rows without a gradient keep zero moments: the update stays lazy


def test_lazy_adam_kernel_checks_indices_before_writing(kernels_on):
    param, m, v = torch.randn(10, 3), torch.zeros(10, 3), torch.zeros(10, 3)
    before = param.clone()
    with pytest.raises(native.NativeIndexError, match="lazy_adam"):
        native.lazy_adam_(param, m, v, torch.tensor([2, 10]), torch.ones(2, 3), 0.1, 0.9, 0.999, 1e-8)
    assert torch.equal(param, before) and not m.any()
    # the row markers were left clean: a valid update afterwards touches exactly its rows
    assert native.lazy_adam_(param, m, v, torch.tensor([4, 4]), torch.ones(2, 3), 0.1, 0.9, 0.999, 1e-8)
    changed = (param != before).any(dim=1).nonzero().squeeze(1).tolist()
    assert changed == [4]
    torch.testing.assert_close(m[4], torch.full((3,), 0.2))  # the two entries of row 4 were summed first


def test_lazy_adam_kernel_declines_what_it_cannot_take(kernels_on):
    param = torch.zeros(4, 2, dtype=torch.float64)
    assert not native.lazy_adam_(param, param.clone(), param.clone(), torch.tensor([1]),
                                 torch.ones(1, 2, dtype=torch.float64), 0.1, 0.9, 0.999, 1e-8)
    strided = torch.zeros(2, 4).T  # not contiguous: written in place, so never copied
    assert not native.lazy_adam_(strided, torch.zeros(4, 2), torch.zeros(4, 2), torch.tensor([1]), torch.ones(1, 2),
                                 0.1, 0.9, 0.999, 1e-8)


def _dense_from_pairs(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    dense = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    dense[rows, cols] = True
    return dense


@pytest.mark.parametrize("with_own", [False, True])
def test_hit_pairs_are_the_dense_mask_without_each_rows_own_column(kernels_on, with_own):
    gen = torch.Generator().manual_seed(0)
    n_users, n_items = 12, 30
    lengths = torch.randint(0, 9, (n_users,), generator=gen)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)])
    pos_items = torch.randint(0, n_items, (int(lengths.sum()),), generator=gen)
    users = torch.randint(0, n_users, (8,), generator=gen)  # readers may repeat in a batch
    candidates = torch.randint(0, n_items, (40,), generator=gen)  # and candidates too
    own = torch.randint(0, 40, (8,), generator=gen) if with_own else None
    rows, cols = native.hit_pairs(candidates, users, offsets, pos_items, n_items, own=own)
    assert bool((rows[1:] >= rows[:-1]).all())  # ordered by row, as the blocked softmax reads them
    expected = torch.zeros(8, 40, dtype=torch.bool)  # naive: is candidate c among row b's reader's books?
    for b, user in enumerate(users.tolist()):
        read = set(pos_items[offsets[user] : offsets[user + 1]].tolist())
        for c, item in enumerate(candidates.tolist()):
            expected[b, c] = item in read
    if own is not None:
        expected[torch.arange(8), own] = False
    assert expected.any()
    assert torch.equal(_dense_from_pairs(rows, cols, 8, 40), expected)


def test_hit_pairs_beyond_the_first_buffer_are_all_returned(kernels_on):
    n_items = 1000
    candidates = torch.arange(n_items)
    offsets = torch.tensor([0, n_items])  # one reader who has read every candidate
    users = torch.zeros(10, dtype=torch.int64)
    rows, cols = native.hit_pairs(candidates, users, offsets, torch.arange(n_items), n_items)
    assert len(rows) == 10 * n_items  # more than the first buffer (4,096) holds
    assert torch.equal(cols.view(10, n_items), candidates.expand(10, n_items))


def test_hit_pairs_reject_an_item_outside_the_catalogue(kernels_on):
    with pytest.raises(native.NativeIndexError, match="hit_pairs"):
        native.hit_pairs(torch.tensor([0, 5]), torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([1]), 5)
    rows, cols = native.hit_pairs(torch.tensor([0, 4]), torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([4]), 5)
    assert rows.tolist() == [0] and cols.tolist() == [1]


def test_bag_kernels_reject_a_history_item_outside_the_table(kernels_on):
    with pytest.raises(native.NativeIndexError, match="bag_forward"):
        native.bag_forward(torch.zeros(3, 2), torch.tensor([[0, 3]]), torch.ones(1, 2))


def test_the_switch_turns_every_kernel_off(monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.library() is None and not native.takes()
    assert not native.lazy_adam_(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0]),
                                 torch.ones(1, 2), 0.1, 0.9, 0.999, 1e-8)
    assert native.hit_pairs(torch.tensor([0]), torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([0]), 1) is None


def test_a_failed_build_leaves_the_kernels_off_with_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(native.ENV_SWITCH, "1")
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("BOOKTOWER_CACHE_DIR", str(tmp_path))
    native._load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="booktower.native"):
            assert native.library() is None
        assert "C kernels are off" in caplog.text and "PyTorch path" in caplog.text
        assert not list(tmp_path.rglob("*.so"))
    finally:
        native._load.cache_clear()


def test_the_build_is_cached_under_the_cache_dir(kernels_on, monkeypatch, tmp_path):
    monkeypatch.setenv("BOOKTOWER_CACHE_DIR", str(tmp_path))
    native._load.cache_clear()
    try:
        assert native.library() is not None
        (built,) = tmp_path.glob("native/kernels-*.so")
        stamp = built.stat().st_mtime_ns
        native._load.cache_clear()
        assert native.library() is not None
        assert built.stat().st_mtime_ns == stamp  # loaded again, not rebuilt
        assert not [p for p in (tmp_path / "native").iterdir() if p != built]  # no scratch left behind
    finally:
        native._load.cache_clear()


def test_training_steps_with_and_without_the_kernels_agree(kernels_on, monkeypatch, small_config, tmp_path):
    """Three optimiser steps of the default task (history pooling, mixed negatives, hit masking, LazyAdam)."""
    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import build_model
    from booktower.training.trainer import Trainer

    data = random_prepared(n_users=80, n_items=40, per_user=12)
    config = small_config("training.batch_size=64")
    weights = []
    for switch in ("1", "0"):
        monkeypatch.setenv(native.ENV_SWITCH, switch)
        model = build_model(config, data, torch.device("cpu"))
        trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, tmp_path / switch)
        for k in range(3):
            total = sum(trainer.task.losses(trainer.train.batch(torch.arange(64 * k, 64 * k + 64))).values())
            trainer.optim.zero_grad()
            total.backward()
            trainer.optim.step(k)
        weights.append({name: p.detach().clone() for name, p in model.named_parameters()})
    assert any("history" in name or "ids" in name for name in weights[0])
    for name in weights[0]:
        # Adam divides by sqrt(v): float rounding in a near-zero gradient can move one update (lr 0.01 here) by a
        # small fraction of itself, so 1e-4 absolute rather than rounding-level tolerance.
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=1e-4, atol=1e-4, msg=lambda m: name + m)


def test_a_compiler_without_cpu_clones_still_builds_the_kernels(kernels_on, monkeypatch, tmp_path):
    """Where function multi-versioning does not build (a C library without ifunc, such as musl), the kernels
    are built once more without it."""
    real = native._compiler()
    wrapper = tmp_path / "cc-without-ifunc"
    wrapper.write_text("#!/bin/sh\ncase \"$*\" in *-DBOOKTOWER_NO_CLONES*) exec " + real + " \"$@\";; esac\n"
                       "echo 'error: the call requires ifunc, which is not supported by this target' >&2\nexit 1\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    monkeypatch.setenv("BOOKTOWER_CACHE_DIR", str(tmp_path / "cache"))
    native._load.cache_clear()
    try:
        assert native.library() is not None
        assert len(list((tmp_path / "cache").glob("native/kernels-*.so"))) == 1
        param, m, v = torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2)
        assert native.lazy_adam_(param, m, v, torch.tensor([1]), torch.ones(1, 2), 0.1, 0.9, 0.999, 1e-8)
        assert param[1].lt(0).all() and not param[0].any()
    finally:
        native._load.cache_clear()


def test_run_json_records_which_path_trained(kernels, small_config, tmp_path):
    import json

    from booktower.data.toy import random_prepared
    from booktower.training.pipeline import train_run

    train_run(small_config("training.epochs=1"), tmp_path, data=random_prepared(n_users=30, n_items=20, per_user=6))
    assert json.loads((tmp_path / "run.json").read_text())["cpu_kernels"] == kernels


def test_kernels_share_pytorchs_openmp_runtime(kernels_on):
    """Built with -fopenmp only where PyTorch runs on libgomp, and then bound to that very copy: one thread pool."""
    if not native._torch_uses_libgomp():
        pytest.skip("this PyTorch does not run on GNU OpenMP; the kernels are built without OpenMP")
    # A fresh process: in this one, other libraries (faiss brings its own libgomp) may have loaded theirs.
    script = ("import torch\nfrom booktower import native\nassert native.library() is not None\n"
              "print(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, native.ENV_SWITCH: "1"}).stdout
    gomp_files = ast.literal_eval(out.strip().splitlines()[-1])
    assert len(gomp_files) == 1, gomp_files


def test_kernels_on_two_threads_agree_with_the_pytorch_path(kernels_on, monkeypatch):
    """Inputs large enough for the parallel loops (at least PARALLEL_ROWS rows), on 2 threads."""
    from booktower.models.history import HistoryPooler
    from booktower.models.spec import HistorySpec
    from booktower.training.losses import blocked_in_batch_softmax

    torch.set_num_threads(2)  # the autouse fixture restores 1 afterwards
    gen = torch.Generator().manual_seed(5)
    n_items, batch, length = 20_000, 400, 30
    history = torch.randint(-1, n_items, (batch, length), generator=gen)
    query = torch.randn(batch, 16, generator=gen)
    vectors = torch.randn(1200, 16, generator=gen)  # blocks of 256 x 1,200 logits: parallel rows
    bias = torch.randn(1200, generator=gen)
    masked = (torch.randint(0, batch, (900,), generator=gen).sort().values,
              torch.randint(1, 1200, (900,), generator=gen))
    positive = torch.zeros(batch, dtype=torch.int64)
    adam_rows = torch.randperm(n_items, generator=gen)[:6000]
    results = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(native.ENV_SWITCH, switch)
        table = torch.randn(n_items, 16, generator=torch.Generator().manual_seed(6), requires_grad=True)
        pooled = HistoryPooler(HistorySpec("mean", length, 1.0, 1, 1), 16)(table, history, True)
        q, v = query.clone().requires_grad_(), vectors.clone().requires_grad_()
        loss = blocked_in_batch_softmax(q, v, bias, positive, masked, 256)
        (loss + pooled.square().sum()).backward()
        param = torch.randn(n_items, 16, generator=torch.Generator().manual_seed(7))
        grad = torch.sparse_coo_tensor(adam_rows[None], torch.ones(6000, 16), (n_items, 16), check_invariants=True)
        opt_param = nn.Parameter(param)
        opt = LazyAdam([opt_param], lr=0.01)
        opt_param.grad = grad
        opt.step()
        results[switch] = (pooled.detach(), loss.detach(), q.grad, v.grad, table.grad.to_dense(), opt_param.detach())
    for c_value, torch_value in zip(results["1"], results["0"]):
        torch.testing.assert_close(c_value, torch_value, rtol=1e-5, atol=1e-5)
