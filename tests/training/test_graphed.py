"""The CUDA-graph step (training/graphed.py): its static-shape ops train as the eager step does, the replayed
step reads each batch's inputs and rates, and runs it cannot capture are named. The capture itself needs a GPU
(the last test, skipped elsewhere; benchmarks/gpu.sh runs it)."""

from __future__ import annotations

import logging

import pytest
import torch

from booktower.data.samplers import accidental_hit_mask, accidental_hit_pairs, gather_rows
from booktower.data.toy import random_prepared
from booktower.training.graphed import GraphedStep, graph_blockers, graph_choice, graphed_step
from booktower.training.optim import LazyAdam, masked_adam_
from booktower.training.pipeline import build_model
from booktower.training.trainer import Trainer
from booktower.utils.host_syncs import SyncRecorder

GRAPHABLE = ["training.workers=1", "training.batch_size=32", "training.negatives.num_negatives=8",
             "training.loss.cal_weight=0", "model.history.pooling=recency"]


def _trainer(config, data, tmp_path, device: str = "cpu") -> Trainer:
    torch.manual_seed(config.seed)
    model = build_model(config, data, torch.device(device))
    return Trainer(model, data, config.training, config.seed, config.evaluation.ks, tmp_path)


def _batches(trainer: Trainer, n_full: int) -> list[torch.Tensor]:
    """`n_full` batches of the configured size, then a shorter one (an epoch's last)."""
    size = trainer.config.batch_size
    perm = torch.randperm(trainer.train.n, generator=torch.Generator().manual_seed(5)).to(trainer.device)
    return [perm[k * size : (k + 1) * size] for k in range(n_full)] + [perm[n_full * size : n_full * size + 7]]


def _parameters(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("extra", [[], ["training.grad_clip=0.5", "training.optimizer.schedule=cosine"]])
def test_replayed_static_step_trains_as_the_eager_step_does(small_config, tmp_path, extra):
    """Warm-up, capture and replay emulated on the CPU (the body rerun on the graph's input buffers): a replay
    that missed a batch's indices, its negatives, a learning rate or a table's step size would drift from the
    eager run. The losses agree to 1e-5 (float32 sums in another order: candidates not deduplicated, bags
    padded). The weights agree to 1e-4, a twentieth of the learning rate: Adam moves a weight by about
    lr * g / (|g| + eps), so a gradient at rounding level (1e-7 of a largest 0.46, seen here) moves by an amount
    its rounding decides, and the next steps carry that on (after 9 steps here: 3 of 1.1M weights differ by more
    than 1e-5, 82 by more than 1e-6)."""
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    config = small_config(*GRAPHABLE, *extra)
    eager = _trainer(config, data, tmp_path / "eager")
    graphed = _trainer(config, data, tmp_path / "graphed")
    step = GraphedStep(graphed.task, graphed.optim, config.training.batch_size, bf16=False, warmup=2,
                       device_graph=False)
    graphed.graphed = step
    batches = _batches(eager, 8)
    assert len(batches[0]) == 32 and len(batches[-1]) == 7
    for index in batches:
        expected, got = eager.train_step(index), graphed.train_step(index)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name].detach(), rtol=1e-5, atol=1e-6)
    assert step.captured and graphed.step == eager.step == len(batches)
    before, after = _parameters(eager), _parameters(graphed)
    differing = 0
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-4, msg=name)
        differing += int(((after[name] - before[name]).abs() > 1e-5).sum())
    assert differing <= 10
    tables = eager.optim.sparse_optimizer()
    assert [tables.state[p]["step"] for p in eager.sparse_tables] == \
        [step.lazy.state[p]["step"] for p in step.tables]


def test_a_fit_with_the_replayed_step_logs_the_epochs_the_eager_fit_logs(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    config = small_config(*GRAPHABLE, "training.epochs=2")
    eager = _trainer(config, data, tmp_path / "eager")
    graphed = _trainer(config, data, tmp_path / "graphed")
    graphed.graphed = GraphedStep(graphed.task, graphed.optim, config.training.batch_size, bf16=False, warmup=1,
                                  device_graph=False)
    expected, got = eager.fit(), graphed.fit()
    assert graphed.graphed.captured and len(got.rows) == len(expected.rows) == 2
    assert (graphed.step_kind(), eager.step_kind()) == ("cuda_graph", "eager")
    for want, have in zip(expected.rows, got.rows):
        for key in ("loss_total", "loss_main", "val_NDCG@10", "lr_factor"):
            assert have[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert (tmp_path / "graphed" / "checkpoints" / "last").exists()


@pytest.mark.parametrize("extra", [[], ["model.history.content=true"]])
def test_the_static_body_has_no_host_syncing_op_and_dense_table_gradients(small_config, tmp_path, monkeypatch,
                                                                          extra):
    import booktower.models.layers as layers
    import booktower.models.towers as towers

    # what all_known answers for CUDA tensors (on the CPU it reads the ids' minimum, a sync only on a GPU)
    monkeypatch.setattr(layers, "all_known", lambda ids: False)
    monkeypatch.setattr(towers, "all_known", lambda ids: False)
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    trainer = _trainer(small_config(*GRAPHABLE, "training.grad_clip=1.0", *extra), data, tmp_path)
    step = GraphedStep(trainer.task, trainer.optim, trainer.config.batch_size, bf16=False, device_graph=False)
    index = _batches(trainer, 1)[0]
    negatives = trainer.task.draw_negatives(len(index))
    step._body(index, negatives)  # the optimisers' state is made once, outside what a graph would hold
    recorder = SyncRecorder()
    with recorder:
        step._body(index, negatives)
    assert dict(recorder.seen) == {}
    assert step.tables and all(not p.grad.is_sparse and p.grad.shape == p.shape for p in step.tables)
    # the eager step of the same run does sync (the check can fail)
    eager = _trainer(small_config(*GRAPHABLE), data, tmp_path / "eager")
    eager.train_step(index)
    with recorder:
        eager.train_step(index)
    assert sum(recorder.seen.values()) > 0


def test_dynamo_traces_the_static_losses_as_one_graph(small_config, tmp_path, monkeypatch):
    """On CUDA the graph's losses go through torch.compile as a whole: a graph break would split the fused
    kernels (and a break at a data-dependent op would mean a sync). The eager path breaks, so this can fail."""
    import torch._dynamo as dynamo

    import booktower.models.layers as layers
    import booktower.models.towers as towers

    monkeypatch.setattr(layers, "all_known", lambda ids: False)  # as on CUDA: no look at the ids' values
    monkeypatch.setattr(towers, "all_known", lambda ids: False)
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    trainer = _trainer(small_config(*GRAPHABLE), data, tmp_path)
    index = _batches(trainer, 1)[0]
    negatives = trainer.task.draw_negatives(len(index))

    def eager_losses(index, negatives):
        return trainer.task.losses(trainer.train.batch(index), negatives)

    assert dynamo.explain(eager_losses)(index, negatives).graph_break_count > 0
    dynamo.reset()
    step = GraphedStep(trainer.task, trainer.optim, trainer.config.batch_size, bf16=False, device_graph=False)
    explained = dynamo.explain(step.batch_losses)(index, negatives)
    dynamo.reset()
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


@pytest.mark.slow
def test_inductor_compiles_the_static_losses_to_the_eager_values(small_config, tmp_path, monkeypatch):
    """What the graph holds on CUDA, compiled here by Inductor's CPU backend under bf16 autocast (the same
    front end: Dynamo, AOTAutograd and the decompositions; ~20 s on 2 cores): the losses and every gradient as
    eager computes them."""
    import shutil

    import torch._dynamo as dynamo

    import booktower.models.layers as layers
    import booktower.models.towers as towers

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("Inductor's CPU backend needs a C compiler")
    monkeypatch.setattr(layers, "all_known", lambda ids: False)
    monkeypatch.setattr(towers, "all_known", lambda ids: False)
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    trainer = _trainer(small_config(*GRAPHABLE), data, tmp_path)
    step = GraphedStep(trainer.task, trainer.optim, trainer.config.batch_size, bf16=False, device_graph=False)
    index = _batches(trainer, 1)[0]
    negatives = trainer.task.draw_negatives(len(index))

    def gradients(losses):
        for p in trainer.model.parameters():
            p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            parts = losses(index, negatives)
        sum(parts.values()).backward()
        return parts, {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}

    dynamo.reset()
    try:
        compiled_parts, compiled_grads = gradients(torch.compile(step.batch_losses, fullgraph=True))
    finally:
        dynamo.reset()
    parts, grads = gradients(step.batch_losses)
    for name in parts:
        torch.testing.assert_close(compiled_parts[name], parts[name], rtol=1e-5, atol=1e-6)
    assert compiled_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(compiled_grads[name], grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_masked_adam_updates_the_rows_lazy_adam_updates():
    torch.manual_seed(0)
    grad = torch.randn(10, 4)
    grad[[2, 5, 7]] = 0.0
    reference, masked = torch.nn.Parameter(torch.randn(10, 4)), None
    masked = torch.nn.Parameter(reference.detach().clone())
    lazy_ref, lazy_masked = LazyAdam([reference], lr=0.1), LazyAdam([masked], lr=0.1)
    for step in range(1, 4):
        reference.grad, masked.grad = grad.clone() * step, grad.clone() * step
        lazy_ref.step()
        size = 0.1 * (1 - 0.999**step) ** 0.5 / (1 - 0.9**step)
        masked_adam_(lazy_masked, masked, torch.tensor(size))
    torch.testing.assert_close(masked.detach(), reference.detach())
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(lazy_masked.state_of(masked)[key], lazy_ref.state_of(reference)[key])
    assert torch.equal(masked.detach()[[2, 5, 7]], reference.detach()[[2, 5, 7]])


def test_accidental_hit_mask_holds_the_hit_pairs_but_each_rows_own_column():
    g = torch.Generator().manual_seed(3)
    n_items, readers = 12, torch.tensor([0, 1, 2, 1])
    offsets = torch.tensor([0, 3, 5, 9])
    items = torch.tensor([1, 4, 7, 2, 4, 0, 5, 9, 11])  # per reader, ascending
    keys = torch.sort(torch.repeat_interleave(torch.arange(3), offsets[1:] - offsets[:-1]) * n_items + items).values
    candidates = torch.cat([torch.tensor([4, 2, 9, 4]), torch.randint(0, n_items, (6,), generator=g)])
    own = torch.arange(4)
    mask = accidental_hit_mask(readers, candidates, keys, n_items, own)
    pos_items, pos_rows = gather_rows(offsets, items, readers)
    rows, cols = accidental_hit_pairs(candidates, pos_items, pos_rows, n_items)
    expected = torch.zeros(4, len(candidates), dtype=torch.bool)
    expected[rows, cols] = True
    expected[torch.arange(4), own] = False
    assert torch.equal(mask, expected)
    assert mask[0, 3] and not mask[0, 0]  # reader 0 holds book 4 in two columns: the other one is a hit


@pytest.mark.parametrize("setting, reason", [
    ("training.loss.main=bce", "in-batch sampled softmax"),
    ("training.loss.cal_weight=1", "category alignment"),
    ("model.item.id_dropout=0.1", "ID dropout"),
    ("model.history.pooling=attention", "attention pooling"),
])
def test_graph_blockers_name_what_cannot_be_captured(small_config, tmp_path, setting, reason):
    data = random_prepared(n_users=30, n_items=20, per_user=6)
    overrides = [*GRAPHABLE, setting]
    if setting.endswith("bce"):
        overrides.append("training.negatives.sampler=uniform")
    trainer = _trainer(small_config(*overrides), data, tmp_path)
    assert graph_blockers(trainer.task, distributed=False) and reason in "; ".join(
        graph_blockers(trainer.task, distributed=False))
    assert graph_blockers(_trainer(small_config(*GRAPHABLE), data, tmp_path / "ok").task, distributed=False) == []


def test_cuda_graph_setting_is_ignored_with_a_warning_on_the_cpu(small_config, tmp_path, caplog):
    data = random_prepared(n_users=30, n_items=20, per_user=6)
    with caplog.at_level(logging.WARNING):
        trainer = _trainer(small_config(*GRAPHABLE, "training.cuda_graph=true"), data, tmp_path)
    assert trainer.graphed is None
    assert "training.cuda_graph is for CUDA" in caplog.text


def test_auto_is_the_default_and_stays_silent_on_the_cpu(small_config, tmp_path, caplog):
    config = small_config(*GRAPHABLE)
    assert config.training.cuda_graph == "auto"
    with caplog.at_level(logging.INFO):
        trainer = _trainer(config, random_prepared(n_users=30, n_items=20, per_user=6), tmp_path)
    assert trainer.graphed is None and "cuda_graph" not in caplog.text


@pytest.mark.parametrize(("wanted", "level", "announce", "logged"), [
    ("auto", logging.INFO, True, True), ("auto", logging.INFO, False, False),  # other ranks, a refit: quiet
    (True, logging.WARNING, True, True), (True, logging.WARNING, False, True)])
def test_a_step_the_graph_cannot_hold_is_said_once_and_warned_only_when_asked_for(
        small_config, tmp_path, caplog, wanted, level, announce, logged):
    """The decision for a CUDA device, on a CPU-built task: the category alignment loss blocks the capture."""
    trainer = _trainer(small_config(*GRAPHABLE, "training.loss.cal_weight=1"), random_prepared(
        n_users=30, n_items=20, per_user=6), tmp_path)
    config = trainer.config.model_copy(update={"cuda_graph": wanted})
    with caplog.at_level(logging.DEBUG, logger="booktower.training.graphed"):
        assert graphed_step(trainer.task, trainer.optim, config, torch.device("cuda"), False, announce) is None
    lines = [r for r in caplog.records if "category alignment" in r.getMessage()]
    assert [r.levelno for r in lines] == ([level] if logged else [])


@pytest.mark.parametrize(("wanted", "device", "batch", "blockers", "weights", "use", "says"), [
    ("auto", "cuda", 1024, [], 1_000, True, None),
    ("auto", "cuda", 8192, [], 1_000, True, None),
    ("auto", "cuda", 8193, [], 1_000, False, None),  # a GPU-sized batch: eager, as measured
    ("auto", "cpu", 1024, [], 1_000, False, None),
    ("auto", "cuda", 1024, ["the category loss"], 1_000, False, "runs eagerly (training.cuda_graph: auto)"),
    ("auto", "cuda", 1024, [], 70_000_000, False, "70,000,000 weights"),
    (True, "cuda", 32768, [], 1_000, True, None),
    (True, "cuda", 1024, [], 70_000_000, True, "may well be faster"),
    (True, "cpu", 1024, [], 1_000, False, "is for CUDA and is ignored on cpu"),
    (True, "cuda", 1024, ["torchrun"], 1_000, False, "cannot be captured with torchrun"),
    (False, "cuda", 1024, [], 1_000, False, None),
])
def test_graph_choice(wanted, device, batch, blockers, weights, use, says):
    chosen, line = graph_choice(wanted, device, batch, blockers, weights)
    assert chosen is use
    assert (line is None) if says is None else (says in line)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the capture itself")
@pytest.mark.parametrize("settings", [["training.bf16=false", "training.compile=false"],
                                      ["training.bf16=true", "training.compile=true"]])
def test_captured_step_on_cuda_trains_as_the_eager_step_does(small_config, tmp_path, settings):
    """Float32 without compile: the graph replays the eager static step's kernels, so the runs agree as on the
    CPU. bf16 with the losses compiled as a whole (the default on a GPU): Inductor sums in its own order and
    rounds to bf16 in other places, so only the losses are compared, to 2%."""
    data = random_prepared(n_users=60, n_items=40, per_user=10)
    base = [*GRAPHABLE, "training.device=cuda", *settings]
    eager = _trainer(small_config(*base), data, tmp_path / "eager", "cuda")
    graphed = _trainer(small_config(*base, "training.cuda_graph=true"), data, tmp_path / "graphed", "cuda")
    assert graphed.graphed is not None
    exact = "training.compile=false" in settings
    for index in _batches(eager, 8):
        expected, got = eager.train_step(index), graphed.train_step(index)
        torch.testing.assert_close(got["total"], expected["total"].detach(), rtol=1e-5 if exact else 2e-2,
                                   atol=1e-6 if exact else 1e-3)
    assert graphed.graphed.captured and graphed.graphed.compiled == (not exact)
    if exact:
        before, after = _parameters(eager), _parameters(graphed)
        for name in before:
            torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-4, msg=name)
