"""The fused in-batch sampled softmax gives the general path's loss and gradients (the general path builds the
dense accidental-hit mask and calls losses.sampled_softmax, which test_losses checks against a naive loop)."""

from __future__ import annotations

import pytest
import torch

from booktower.data.samplers import accidental_hit_pairs, accidental_hits
from booktower.data.toy import random_prepared
from booktower.training.pipeline import build_model
from booktower.training.trainer import Trainer


def test_hit_pairs_are_the_dense_mask_coordinates():
    gen = torch.Generator().manual_seed(0)
    candidates = torch.randint(0, 30, (40,), generator=gen)  # duplicates on purpose
    pos_items = torch.randint(0, 30, (60,), generator=gen)
    pos_rows = torch.randint(0, 8, (60,), generator=gen)
    dense = accidental_hits(candidates, pos_items, pos_rows, 8, 30)
    rows, cols = accidental_hit_pairs(candidates, pos_items, pos_rows, 30)
    sparse = torch.zeros_like(dense)
    sparse[rows, cols] = True
    assert torch.equal(sparse, dense)


@pytest.mark.parametrize("overrides", [[], ["training.loss.logq_correction=false"],
                                       ["training.loss.mask_accidental_hits=false"],
                                       ["training.negatives.sampler=in_batch"],
                                       ["training.loss.logq_weight=0.5"]])
@pytest.mark.parametrize("block_rows", [0, 5, 256])  # one (B, C) matrix (GPU path) / blocks of rows (CPU path)
def test_fused_softmax_matches_the_general_path(small_config, tmp_path, overrides, block_rows, kernels):
    data = random_prepared(n_users=60, n_items=25, per_user=10)
    config = small_config("training.batch_size=64", *overrides)
    grads = []
    losses = []
    for fused in (False, True):
        model = build_model(config, data, torch.device("cpu"))
        trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, tmp_path)
        trainer.task.fused = fused
        trainer.task.softmax_block_rows = block_rows
        loss = trainer.task.losses(trainer.train.batch(torch.arange(64)))["main"]
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.to_dense() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_logq_weight_interpolates_between_no_and_full_correction(small_config, tmp_path):
    data = random_prepared(n_users=60, n_items=25, per_user=10)

    def loss(*overrides: str) -> torch.Tensor:
        config = small_config("training.batch_size=64", *overrides)
        model = build_model(config, data, torch.device("cpu"))
        trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, tmp_path)
        return trainer.task.losses(trainer.train.batch(torch.arange(64)))["main"].detach()

    full, none = loss(), loss("training.loss.logq_correction=false")
    torch.testing.assert_close(loss("training.loss.logq_weight=1.0"), full)
    torch.testing.assert_close(loss("training.loss.logq_weight=0.0"), none)
    half = loss("training.loss.logq_weight=0.5")
    assert not torch.allclose(half, full) and not torch.allclose(half, none)


def test_hit_pairs_of_no_candidates_or_no_hits():
    none = torch.zeros(0, dtype=torch.int64)
    rows, cols = accidental_hit_pairs(none, torch.tensor([1, 2]), torch.tensor([0, 1]), 10)
    assert rows.numel() == 0 and cols.numel() == 0
    rows, cols = accidental_hit_pairs(torch.tensor([5, 7]), torch.tensor([1, 8, 9]), torch.tensor([0, 0, 1]), 10)
    assert rows.numel() == 0 and cols.numel() == 0  # positives below, between and above the candidates
