"""Negative samplers and accidental-hit masking. Randomness comes from a torch.Generator passed in.

A sampler proposes negatives; `accidental_hits` marks every candidate that is one of the row's user's known
positives, so a user's own positive is never used as a negative (it is masked out of the loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from booktower.config.training import NegativeConfig


def generator_state(generator: torch.Generator) -> list[int]:
    return generator.get_state().tolist()


def set_generator_state(generator: torch.Generator, state: list[int]) -> None:
    generator.set_state(torch.tensor(state, dtype=torch.uint8))


@dataclass
class NegativeSampler:
    """Uniform over the catalogue; subclasses change the proposal. `uses_in_batch`: the other rows' positives
    are candidates too. Draws are made on the CPU generator and moved to `device`, so they do not depend on it."""

    n_items: int
    generator: torch.Generator
    item_counts: np.ndarray  # (n_items,) training interaction counts (the in-batch proposal)
    uses_in_batch: bool = False
    kind: str = "uniform"

    def __post_init__(self) -> None:
        counts = torch.as_tensor(self.item_counts, dtype=torch.float64)
        self._unigram = counts / counts.sum().clamp(min=1)  # (n_items,) in-batch proposal
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def draw(self, n: int) -> torch.Tensor:
        return torch.randint(0, self.n_items, (n,), generator=self.generator)

    def proposal(self, items: torch.Tensor) -> torch.Tensor:
        """Probability that one draw returns each item."""
        return torch.full(items.shape, 1.0 / self.n_items, dtype=torch.float64)

    def sample(self, n: int, rows: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n,) negatives shared by the batch, or (rows, n) negatives per row."""
        shape = (n,) if rows is None else (rows, n)
        drawn = self.draw(math.prod(shape)).view(shape)
        if torch.device(device).type == "cuda":  # pinned, the copy does not stall the host until the GPU is idle
            return drawn.pin_memory().to(device, non_blocking=True)
        return drawn.to(device)

    def log_expected_count(self, items: torch.Tensor, batch_size: int, n_sampled: int) -> torch.Tensor:
        """log of how often each candidate item is expected among a batch's candidates (the logQ term of the
        mixed proposal: in-batch positives follow training popularity, sampled ones the sampler's proposal)."""
        proposal, unigram = self._item_tables(items.device)
        flat = items.reshape(-1)
        expected = n_sampled * proposal.index_select(0, flat)
        if self.uses_in_batch:
            expected = expected + batch_size * unigram.index_select(0, flat)
        return torch.log(expected.clamp(min=1e-30)).to(torch.float32).view(items.shape)

    def _item_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item's proposal and in-batch probability (float64) on `device`, made once: the logQ terms are
        then gathered where the candidates are, with no copy to the host and back (two GPU syncs per step)."""
        if device not in self._tables:
            every_item = torch.arange(self.n_items)
            self._tables[device] = (self.proposal(every_item).to(device), self._unigram.to(device))
        return self._tables[device]

    def state_dict(self) -> dict:
        return {"kind": self.kind, "generator": generator_state(self.generator)}

    def load_state_dict(self, state: dict) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"the saved sampler is {state['kind']!r}, this run uses {self.kind!r}")
        set_generator_state(self.generator, state["generator"])


@dataclass
class PopularitySampler(NegativeSampler):
    """count^alpha over training counts (items never seen in training are never drawn)."""

    alpha: float = 0.75
    kind: str = "popularity"

    def __post_init__(self) -> None:
        super().__post_init__()
        weights = torch.as_tensor(self.item_counts, dtype=torch.float64).clamp(min=0) ** self.alpha
        weights[torch.as_tensor(self.item_counts) <= 0] = 0.0
        self._probs = weights / weights.sum()  # (n_items,)
        self._cdf = torch.cumsum(self._probs, 0)
        self._cdf[-1] = 1.0

    def draw(self, n: int) -> torch.Tensor:
        u = torch.rand(n, generator=self.generator, dtype=torch.float64)
        return torch.searchsorted(self._cdf, u, right=True).clamp(max=self.n_items - 1)

    def proposal(self, items: torch.Tensor) -> torch.Tensor:
        return self._probs.index_select(0, items.reshape(-1)).view(items.shape)


def build_sampler(config: NegativeConfig, item_counts: np.ndarray, generator: torch.Generator) -> NegativeSampler:
    n_items = len(item_counts)
    if config.sampler == "uniform":
        return NegativeSampler(n_items, generator, item_counts)
    if config.sampler == "popularity":
        return PopularitySampler(n_items, generator, item_counts, alpha=config.popularity_alpha)
    if config.sampler == "in_batch":
        return NegativeSampler(n_items, generator, item_counts, uses_in_batch=True, kind="in_batch")
    if config.sampler == "mixed":
        return NegativeSampler(n_items, generator, item_counts, uses_in_batch=True, kind="mixed")
    raise ValueError(f"unknown negative sampler {config.sampler!r}; choose uniform, popularity, in_batch or mixed")


def negatives_per_batch(config: NegativeConfig) -> int:
    """How many negatives the sampler draws per batch (in-batch alone draws none)."""
    return 0 if config.sampler == "in_batch" else config.num_negatives


def gather_rows(offsets: torch.Tensor, values: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The CSR rows `rows` flattened: (values, index into `rows` of each value)."""
    # index_select, not advanced indexing: several times faster for 1-D gathers from long tables on the CPU
    starts = offsets.index_select(0, rows)
    lengths = offsets.index_select(0, rows + 1) - starts  # (B,)
    total = int(lengths.sum())
    row_of = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths, output_size=total)
    begin = torch.cumsum(lengths, 0) - lengths
    flat = (starts - begin).index_select(0, row_of) + torch.arange(total, device=rows.device)
    return values.index_select(0, flat), row_of


def accidental_hits(candidates: torch.Tensor, pos_items: torch.Tensor, pos_rows: torch.Tensor, n_rows: int,
                    n_items: int) -> torch.Tensor:
    """(n_rows, C) True where a candidate is one of the row's positives (`pos_items[k]` belongs to row
    `pos_rows[k]`). `candidates` is (C,) shared by every row or (n_rows, C) per row."""
    if candidates.dim() == 1:
        # Shared candidates: map each distinct candidate to a column of a small (rows, distinct) table.
        distinct, inverse = torch.unique(candidates, return_inverse=True)  # (U,), (C,)
        slot = torch.full((n_items,), -1, dtype=torch.int64, device=candidates.device)
        slot[distinct] = torch.arange(len(distinct), device=candidates.device)
        col = slot[pos_items]  # (P,)
        found = col >= 0
        table = torch.zeros(n_rows, len(distinct), dtype=torch.bool, device=candidates.device)
        table[pos_rows[found], col[found]] = True
        return table[:, inverse]  # (rows, C)
    # Per-row candidates: membership of (row, item) keys in the sorted positive keys.
    keys = torch.sort(pos_rows * n_items + pos_items).values  # (P,)
    query = torch.arange(n_rows, device=candidates.device)[:, None] * n_items + candidates  # (rows, C)
    if keys.numel() == 0:
        return torch.zeros_like(candidates, dtype=torch.bool)
    where = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
    return keys[where] == query


def accidental_hit_pairs(candidates: torch.Tensor, pos_items: torch.Tensor, pos_rows: torch.Tensor, n_items: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same hits as `accidental_hits` for shared (C,) candidates, as (row, column) coordinates instead of a
    dense (rows, C) mask: hits are few, so this never touches a (rows, C) matrix."""
    distinct, inverse = torch.unique(candidates, return_inverse=True)  # (U,), (C,)
    # A lookup table item -> its distinct slot (-1: not a candidate): one gather per positive, no search.
    slot = torch.full((n_items,), -1, dtype=torch.int64, device=candidates.device)
    slot[distinct] = torch.arange(len(distinct), device=candidates.device)
    where = slot.index_select(0, pos_items)  # (P,)
    found = (where >= 0).nonzero().squeeze(1)  # (H,) the positives that are candidates, usually few
    # The columns holding each distinct candidate, as CSR rows over the distinct ids.
    columns = torch.argsort(inverse, stable=True)  # (C,)
    offsets = torch.zeros(len(distinct) + 1, dtype=torch.int64, device=candidates.device)
    offsets[1:] = torch.cumsum(torch.bincount(inverse, minlength=len(distinct)), 0)
    cols, k = gather_rows(offsets, columns, where.index_select(0, found))
    return pos_rows.index_select(0, found.index_select(0, k)), cols


def accidental_hit_mask(readers: torch.Tensor, candidates: torch.Tensor, positive_keys: torch.Tensor, n_items: int,
                        own: torch.Tensor) -> torch.Tensor:
    """(B, C) True where shared candidate c is a positive of row b's reader, except row b's own column `own[b]`:
    the hits of `accidental_hit_pairs` as a dense mask, found by a binary search of each (reader, candidate) key
    in the sorted `positive_keys` (reader * n_items + item). Fixed shapes and no host sync, so a CUDA graph can
    replay it; B * C searches, which a GPU does at once and a CPU step should not (it uses the pairs)."""
    keys = readers[:, None] * n_items + candidates[None, :]  # (B, C)
    if positive_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    where = torch.searchsorted(positive_keys, keys).clamp_(max=positive_keys.numel() - 1)
    hits = positive_keys.index_select(0, where.view(-1)).view(keys.shape) == keys
    return hits.scatter_(1, own[:, None], False)
