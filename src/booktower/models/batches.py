"""Tower inputs as tensors, and SideTensors: a side's feature matrices on a device, gathered by row fast."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from booktower.data.types import Ragged, SideFeatures


@dataclass(frozen=True)
class Bags:
    """A batch of bags in EmbeddingBag layout: bag b is values[offsets[b]:offsets[b+1]] (last runs to the end)."""

    values: torch.Tensor  # (nnz,) int64
    offsets: torch.Tensor  # (B,) int64 start of each bag


@dataclass(frozen=True)
class ItemBatch:
    """Item-tower input. `ids` of -1 mean "no ID row" (an unknown book): content path only."""

    ids: torch.Tensor  # (B,) int64
    numeric: torch.Tensor  # (B, d_num) float32
    categorical: dict[str, Bags] = field(default_factory=dict)
    text: Bags | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class UserBatch:
    """User-tower input. `history` holds item indices oldest first, left-padded with -1."""

    ids: torch.Tensor  # (B,) int64, -1 = unknown reader
    numeric: torch.Tensor  # (B, d_num) float32
    categorical: dict[str, Bags] = field(default_factory=dict)
    history: torch.Tensor | None = None  # (B, L) int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def gather_ragged(offsets: torch.Tensor, values: torch.Tensor, rows: torch.Tensor) -> Bags:
    """Rows of a CSR matrix as EmbeddingBag input, without a Python loop over rows."""
    starts = offsets.index_select(0, rows)  # (B,)
    lengths = offsets.index_select(0, rows + 1) - starts  # (B,)
    out_offsets = torch.cumsum(lengths, 0) - lengths  # (B,) exclusive cumsum
    total = int(lengths.sum())
    # position t of the output comes from starts[b] + (t - out_offsets[b]) for its bag b
    shift = torch.repeat_interleave(starts - out_offsets, lengths, output_size=total)  # (nnz,)
    flat = shift + torch.arange(total, device=values.device)
    return Bags(values.index_select(0, flat), out_offsets)


def _tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype).to(device)


class SideTensors:
    """One side's features (one row per index) held on `device`."""

    def __init__(self, features: SideFeatures, device: torch.device | str = "cpu", use_features: bool = True) -> None:
        device = torch.device(device)
        self.n_rows = features.n_rows
        numeric = features.numeric if use_features else np.zeros((features.n_rows, 0), np.float32)
        self.numeric = _tensor(numeric, device, torch.float32)  # (n, d_num)
        self.ragged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if use_features:
            for f in features.categorical:
                self.ragged[f.name] = (_tensor(f.bags.offsets, device, torch.int64), _tensor(f.bags.values, device, torch.int64))
        self.text: tuple[torch.Tensor, torch.Tensor] | None = None
        if use_features and features.text is not None:
            self.text = (_tensor(features.text.offsets, device, torch.int64), _tensor(features.text.values, device, torch.int64))

    def _parts(self, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, Bags], Bags | None]:
        numeric = self.numeric.index_select(0, rows)  # (B, d_num)
        cats = {name: gather_ragged(off, val, rows) for name, (off, val) in self.ragged.items()}
        text = gather_ragged(*self.text, rows) if self.text is not None else None
        return numeric, cats, text

    def item_batch(self, rows: torch.Tensor, ids: torch.Tensor | None = None) -> ItemBatch:
        """Features of `rows`; ID rows are `ids` (default: the same indices)."""
        numeric, cats, text = self._parts(rows)
        return ItemBatch(rows if ids is None else ids, numeric, cats, text)

    def user_batch(self, rows: torch.Tensor, ids: torch.Tensor | None = None,
                   history: torch.Tensor | None = None) -> UserBatch:
        numeric, cats, _ = self._parts(rows)
        return UserBatch(rows if ids is None else ids, numeric, cats, history)


def pad_histories(histories: Ragged, rows: np.ndarray, max_length: int) -> np.ndarray:
    """The last `max_length` items of each row, oldest first, left-padded with -1. (B,) -> (B, L)."""
    rows = np.asarray(rows, dtype=np.int64)
    ends = histories.offsets[rows + 1]  # (B,)
    starts = histories.offsets[rows]
    positions = ends[:, None] - max_length + np.arange(max_length)[None, :]  # (B, L)
    valid = positions >= starts[:, None]
    if histories.values.size == 0:
        return np.full((len(rows), max_length), -1, dtype=np.int64)
    out = histories.values[np.clip(positions, 0, len(histories.values) - 1)]
    return np.where(valid, out, -1).astype(np.int64)
