"""Score functions of a trained model for the evaluator: encode the catalogue and the readers once."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from booktower.data.types import PreparedData, Ragged
from booktower.evaluation.ranking import ScoreFn, inner_products
from booktower.models.encode import encode_items, encode_users
from booktower.models.two_tower import TwoTower
from booktower.training.batching import user_histories

Part = Literal["validation", "test"]


def histories_for(data: PreparedData, part: Part) -> Ragged:
    """What a reader has read before the held-out item: train for validation, train + validation for test."""
    if part == "validation":
        return user_histories(data.n_users, data.split.train)
    if part == "test":
        return user_histories(data.n_users, data.split.train, data.split.valid)
    raise ValueError(f"part must be 'validation' or 'test', got {part!r}")


def score_fn_for(model: TwoTower, data: PreparedData, part: Part) -> ScoreFn:
    """user indices (U,) -> (U, n_items) scores <p_u, p_v> (temperature does not change the ranking)."""
    items_t = encode_items(model, data.item_features).T.contiguous()  # (d, n_items)
    users = encode_users(model, data.user_features, np.arange(data.n_users), histories_for(data, part))  # (n_users, d)

    def score(user_index: np.ndarray) -> torch.Tensor:
        rows = torch.as_tensor(np.asarray(user_index, dtype=np.int64), device=users.device)
        return inner_products(users[rows], items_t)  # (U, n_items), on the model's device: masked and cut there

    return score
