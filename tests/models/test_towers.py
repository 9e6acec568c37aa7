"""Towers: every parameter learns, unknown ids take the content path, save/load round-trips, fusions run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from booktower.data.toy import random_prepared
from booktower.data.types import Ragged
from booktower.models.encode import encode_items, encode_users
from booktower.models.io import load_model, save_model
from booktower.training.pipeline import build_model
from booktower.training.trainer import Trainer


@pytest.fixture(scope="module")
def data():
    return random_prepared(n_users=60, n_items=40, per_user=8)


@pytest.fixture
def make(small_config, data, tmp_path):
    def build(*overrides: str) -> Trainer:
        return _trainer(small_config, data, tmp_path, *overrides)
    return build


def _trainer(small_config, data, tmp_path, *overrides: str) -> Trainer:
    # Every input switched on (reader IDs and a_u are off by default), so every path is exercised.
    config = small_config("training.loss.cal_weight=1.0", "model.user.use_id=true", "model.dat.augment_users=true",
                          *overrides)
    model = build_model(config, data, torch.device("cpu"))
    return Trainer(model, data, config.training, config.seed, [10], tmp_path)


def _batch(trainer: Trainer):
    return trainer.train.batch(torch.arange(min(64, trainer.train.n)))


def _grad(p: torch.nn.Parameter) -> torch.Tensor | None:
    if p.grad is None:
        return None
    return p.grad.coalesce().values() if p.grad.is_sparse else p.grad


@pytest.mark.parametrize("fusion,pooling,content", [("concat", "attention", "false"), ("gate", "recency", "true"),
                                                    ("sum", "mean", "false"), ("concat", "attention", "true")])
def test_every_parameter_gets_a_finite_gradient(make, fusion, pooling, content):
    trainer = make(f"model.fusion={fusion}", f"model.history.pooling={pooling}",
                   "model.history.attention_heads=2", f"model.history.content={content}")
    parts = trainer.task.losses(_batch(trainer))
    assert set(parts) == {"main", "amm_user", "amm_item", "cal"}
    sum(parts.values()).backward()
    for name, p in trainer.model.named_parameters():
        grad = _grad(p)
        assert grad is not None, f"{name} received no gradient"
        assert torch.isfinite(grad).all(), f"{name} has a non-finite gradient"
        assert grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_mimic_losses_alone_change_only_the_augmented_vectors(make):
    trainer = make()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    parts = trainer.task.losses(_batch(trainer))
    trainer.optim.zero_grad()
    (parts["amm_user"] + parts["amm_item"]).backward()
    trainer.optim.step(0)
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"user_tower.augment.table.weight", "item_tower.augment.table.weight"}


def test_unknown_ids_use_the_content_path_only(data, make):
    model = make().model
    unknown = encode_items(model, data.item_features, np.full(data.n_items, -1))
    known = encode_items(model, data.item_features)
    with torch.no_grad():
        model.item_tower.ids.table.weight.add_(1.0)
        model.item_tower.augment.table.weight.add_(1.0)
    assert torch.equal(encode_items(model, data.item_features, np.full(data.n_items, -1)), unknown)
    assert not torch.allclose(known, unknown)
    assert torch.allclose(unknown.norm(dim=1), torch.ones(data.n_items), atol=1e-5)


def test_encode_users_anonymous_reader_with_a_history(data, make):
    model = make().model
    features = type(data.user_features)(np.zeros((1, data.user_features.numeric.shape[1]), np.float32),
                                        data.user_features.numeric_names)
    vector = encode_users(model, features, np.array([-1]), Ragged.from_lists([[3, 5, 7]]))
    empty = encode_users(model, features, np.array([-1]), Ragged.from_lists([[]]))
    assert vector.shape == (1, model.spec.output_dim) and torch.isfinite(vector).all()
    assert not torch.allclose(vector, empty)


def test_save_and_load_give_identical_embeddings(data, make, tmp_path):
    model = make("model.history.pooling=attention").model
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.spec == model.spec
    assert torch.equal(encode_items(model, data.item_features), encode_items(loaded, data.item_features))
    histories = Ragged.from_lists([[1, 2], [], [4, 5, 6]])
    users = np.array([0, 1, 2])
    assert torch.equal(encode_users(model, data.user_features, users, histories),
                       encode_users(loaded, data.user_features, users, histories))


def test_last_items_channel_reads_only_the_newest_items(data, make, tmp_path):
    """The short-term input is the mean of the last N history items: older items change only the long-term
    pooled input, so with the long-term input zeroed the user vector depends on the last N alone."""
    model = make("model.history.last_items=2", "model.history.pooling=mean").model
    assert model.recent is not None
    features = type(data.user_features)(np.zeros((2, data.user_features.numeric.shape[1]), np.float32),
                                        data.user_features.numeric_names)
    table = model.item_tower.ids.table.weight
    recent = model.recent(table, torch.tensor([[1, 2, 3, 4], [9, 8, 3, 4]])[:, -2:], False)
    torch.testing.assert_close(recent[0], table[[3, 4]].mean(0))
    torch.testing.assert_close(recent[0], recent[1])
    vectors = encode_users(model, features, np.array([-1, -1]), Ragged.from_lists([[1, 2, 3, 4], [9, 8, 3, 4]]))
    assert not torch.allclose(vectors[0], vectors[1])  # the long-term mean still sees the older items
    save_model(model, tmp_path / "model")
    assert load_model(tmp_path / "model").spec.history.last_items == 2


def test_own_history_table_is_separate_from_the_item_ids(data, make, tmp_path):
    """With model.history.own_table the reader's history is pooled from its own table: the item tower's ID
    table then learns only from candidates, and changing it leaves the user vectors as they were."""
    model = make("model.history.own_table=true", "model.history.pooling=mean").model
    assert model.history_ids is not None and model.history_table() is model.history_ids.table.weight
    histories = Ragged.from_lists([[1, 2], [3], [4, 5, 6]])
    users = np.array([0, 1, 2])
    before = encode_users(model, data.user_features, users, histories)
    with torch.no_grad():
        model.item_tower.ids.table.weight.add_(1.0)
        after = encode_users(model, data.user_features, users, histories)
        model.history_ids.table.weight[4].add_(1.0)
        changed = encode_users(model, data.user_features, users, histories)
    torch.testing.assert_close(after, before)
    assert torch.equal(changed[:2], before[:2]) and not torch.allclose(changed[2], before[2])
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.spec.history.own_table
    assert torch.equal(encode_users(loaded, data.user_features, users, histories), changed)


def test_last_items_needs_a_history(small_config):
    from booktower.config import ConfigError

    with pytest.raises(ConfigError, match="last_items needs a history"):
        small_config("model.history.pooling=none", "model.history.last_items=3")
