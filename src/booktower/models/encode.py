"""Encoding whole catalogues and reader sets in chunks, in eval mode, without gradients."""

from __future__ import annotations

import numpy as np
import torch

from booktower.data.types import Ragged, SideFeatures
from booktower.models.batches import SideTensors, pad_histories
from booktower.models.two_tower import TwoTower


def _device(model: TwoTower) -> torch.device:
    return next(model.parameters()).device


def _select_rows(n_rows: int, index: np.ndarray) -> np.ndarray:
    """Feature rows for each entry of `index`: aligned when the counts match, else looked up by index."""
    if n_rows == len(index):
        return np.arange(len(index), dtype=np.int64)
    if (index < 0).any():
        raise ValueError(f"{n_rows} feature rows for {len(index)} entries: to encode unknown (-1) entries pass "
                         "one feature row per entry")
    return index


@torch.no_grad()
def encode_items(model: TwoTower, item_features: SideFeatures, item_index: np.ndarray | None = None,
                 chunk: int = 8192) -> torch.Tensor:
    """(n, d) item vectors for the n rows of `item_features`; `item_index[r]` is row r's ID row (-1 = unknown
    book: content path only). Default: row r is item r."""
    was_training = model.training
    model.eval()
    device = _device(model)
    side = SideTensors(item_features, device)
    n = item_features.n_rows
    ids = np.arange(n, dtype=np.int64) if item_index is None else np.asarray(item_index, dtype=np.int64)
    if len(ids) != n:
        raise ValueError(f"item_index has {len(ids)} entries for {n} feature rows; give one per row")
    out = []
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=device)
        batch = side.item_batch(rows, torch.as_tensor(ids[start : start + chunk], device=device))
        out.append(model.item_embeddings(batch).float())  # (c, d)
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.spec.output_dim, device=device)


@torch.no_grad()
def encode_users(model: TwoTower, user_features: SideFeatures, users: np.ndarray, histories: Ragged,
                 chunk: int = 8192) -> torch.Tensor:
    """(U, d) reader vectors. `users[r]` is the ID row (-1 = unknown reader). Feature rows and history rows
    align with `users` when their counts equal len(users); otherwise they are looked up by user index.
    Histories hold item indices oldest first; the model keeps the most recent `history.max_length`."""
    was_training = model.training
    model.eval()
    device = _device(model)
    users = np.asarray(users, dtype=np.int64)
    side = SideTensors(user_features, device)
    feature_rows = _select_rows(user_features.n_rows, users)
    history_rows = _select_rows(histories.n_rows, users)
    length = model.spec.history.max_length
    out = []
    for start in range(0, len(users), chunk):
        stop = start + chunk
        history = None
        if model.history is not None:
            history = torch.as_tensor(pad_histories(histories, history_rows[start:stop], length), device=device)
        batch = side.user_batch(torch.as_tensor(feature_rows[start:stop], device=device),
                                torch.as_tensor(users[start:stop], device=device), history)
        out.append(model.user_embeddings(batch).float())  # (c, d)
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.spec.output_dim, device=device)
