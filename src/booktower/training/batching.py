"""Vectorised training batches: per-interaction history windows and per-user positives, all as index maths."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from booktower.data.types import Interactions, Ragged


@dataclass(frozen=True)
class TrainBatch:
    users: torch.Tensor  # (B,) user index of each positive interaction
    items: torch.Tensor  # (B,) its item
    history: torch.Tensor | None  # (B, L) earlier train items of the user, oldest first, -1 padded


def merge_in_time_order(*parts: Interactions) -> Interactions:
    """The parts (oldest part first) as one table sorted by (user, time, part, order within part): a later
    part's interaction with the same timestamp stays after the earlier part's, as the split put it."""
    users = np.concatenate([p.user for p in parts])
    stamps = np.concatenate([p.timestamp for p in parts])
    part_rank = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
    within = np.concatenate([np.arange(len(p)) for p in parts])  # the data layer's (time, order) sort
    order = np.lexsort((within, part_rank, stamps, users))
    items = np.concatenate([p.item for p in parts])
    return Interactions(users[order], items[order], stamps[order])


def user_histories(n_users: int, *parts: Interactions) -> Ragged:
    """Each user's items of the given parts in time order (parts are given oldest part first)."""
    merged = merge_in_time_order(*parts)
    return Ragged.by_row(merged.user, merged.item, n_users)


class TrainingData:
    """The training interactions on a device, grouped by user in time order, with everything a batch needs."""

    def __init__(self, train: Interactions, n_users: int, n_items: int, max_history: int | None,
                 device: torch.device) -> None:
        # Stable sort by user keeps each user's (time, order) sequence from the data layer.
        order = np.argsort(train.user, kind="stable")
        users, items = train.user[order].astype(np.int64), train.item[order].astype(np.int64)
        counts = np.bincount(users, minlength=n_users)
        user_start = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=user_start[1:])
        self.n = len(users)
        self.n_items = n_items
        self.max_history = max_history
        self.device = device
        self.users = torch.as_tensor(users, device=device)
        self.items = torch.as_tensor(items, device=device)
        # Interaction j's history is items[seq_start[j]:j]: strictly earlier interactions of the same user.
        self.seq_start = torch.as_tensor(user_start[users], device=device)
        positives = np.unique(users * n_items + items)  # sorted distinct (user, item) keys
        pos_users = positives // n_items
        pos_offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(pos_users, minlength=n_users), out=pos_offsets[1:])
        self.pos_offsets = torch.as_tensor(pos_offsets, device=device)
        self.pos_items = torch.as_tensor(positives % n_items, device=device)
        self.item_counts = np.bincount(items, minlength=n_items)

    @functools.cached_property
    def positive_keys(self) -> torch.Tensor:
        """(P,) sorted reader * n_items + item of every distinct training positive, for the static step's dense
        hit mask (samplers.accidental_hit_mask); made once, on first use (TrainTask.static_shapes), so eager runs
        do not hold it."""
        readers = torch.repeat_interleave(torch.arange(len(self.pos_offsets) - 1, device=self.device),
                                          self.pos_offsets.diff(), output_size=len(self.pos_items))
        return readers * self.n_items + self.pos_items

    def batch(self, index: torch.Tensor) -> TrainBatch:
        """Interactions `index` (B,) -> their users, items and history windows."""
        # index_select rather than advanced indexing: several times faster for these 1-D gathers on the CPU
        users, items = self.users.index_select(0, index), self.items.index_select(0, index)
        history = None
        if self.max_history:
            offsets = torch.arange(-self.max_history, 0, device=self.device)  # (L,)
            positions = index[:, None] + offsets[None, :]  # (B, L)
            valid = positions >= self.seq_start.index_select(0, index)[:, None]
            earlier = self.items.index_select(0, positions.clamp(min=0).view(-1)).view(positions.shape)
            history = torch.where(valid, earlier, torch.full_like(positions, -1))
        return TrainBatch(users, items, history)
