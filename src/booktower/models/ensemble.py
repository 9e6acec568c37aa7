"""Several trained two-towers served as one model.

Each member scores a reader and a book with its own towers; the ensemble's score is the sum of the members'
scores (their logits, <p_u, p_v> / temperature), which is a single inner product of the members' vectors laid end
to end, each reader vector divided by its member's temperature. So an ensemble ranks, exports and serves from one
index, like a single model whose vectors are as wide as the members' together.

Members trained from different seeds disagree in their errors more than in what they get right: on
amazon-books-2014 three seeds of the best config lifted validation NDCG@20 by about 14% over one
(docs/results.md, "Ensembles").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from booktower.models.batches import ItemBatch, UserBatch
from booktower.models.history_content import HistoryContent
from booktower.models.spec import HistorySpec, ModelSpec, SideSpec
from booktower.models.two_tower import TwoTower

ENSEMBLE_KEY = "ensemble"
"""model.json of an ensemble: {"ensemble": [member spec, ...]}; a single model's spec has no such key."""


@dataclass(frozen=True)
class EnsembleSpec:
    """What code reads of a model's spec, for the ensemble: the members share their ID rows (one vocabulary);
    its vectors are as wide as theirs together; a history batch is as long as its longest member reads."""

    members: tuple[ModelSpec, ...]

    @property
    def user(self) -> SideSpec:
        return self.members[0].user

    @property
    def item(self) -> SideSpec:
        return self.members[0].item

    @property
    def output_dim(self) -> int:
        return sum(spec.output_dim for spec in self.members)

    @property
    def history(self) -> HistorySpec:
        return max((spec.history for spec in self.members), key=lambda history: history.max_length)

    def to_dict(self) -> dict[str, Any]:
        return {ENSEMBLE_KEY: [spec.to_dict() for spec in self.members]}


def check_members(specs: list[ModelSpec]) -> None:
    """ValueError unless `specs` can be one ensemble: one vocabulary, and the same pooled book content (a bundle
    keeps one set of content codes for the books added after training)."""
    if len(specs) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(specs)}")
    first = specs[0]
    for number, spec in enumerate(specs[1:], start=2):
        if (spec.user.n_ids, spec.item.n_ids) != (first.user.n_ids, first.item.n_ids):
            raise ValueError(f"member {number} has {spec.user.n_ids:,} readers and {spec.item.n_ids:,} books, member "
                             f"1 {first.user.n_ids:,} and {first.item.n_ids:,}: members must share one vocabulary")
        content = (spec.history.content_fields, spec.history.content_text)
        if content != (first.history.content_fields, first.history.content_text):
            raise ValueError(f"member {number} pools other book content in a reader's history "
                             "(model.history.content) than member 1: members must pool the same")


class Ensemble(nn.Module):
    """The members' vectors concatenated: <[p_u1 / t1, p_u2 / t2], [p_v1, p_v2]> = <p_u1, p_v1> / t1 +
    <p_u2, p_v2> / t2. Weighting by the temperature keeps each member's say what its own training gave it, whatever
    its temperature or vector norm; the book vectors stay as trained (similar-books lists read them)."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        super().__init__()
        check_members(specs)
        self.members = nn.ModuleList(TwoTower(spec) for spec in specs)
        self.spec = EnsembleSpec(tuple(specs))

    @property
    def history(self) -> nn.Module | None:
        """Not None when any member reads the reader's history (so the encoder passes it)."""
        return next((m.history for m in self.members if m.history is not None), None)

    @property
    def history_content(self) -> HistoryContent | None:
        """The members' book content codes (the same in each: `check_members`)."""
        return self.members[0].history_content

    def add_content_only_books(self, codes: list[np.ndarray]) -> None:
        for member in self.members:
            member.add_content_only_books(codes)

    def user_embeddings(self, batch: UserBatch) -> torch.Tensor:
        return torch.cat([member.user_embeddings(batch).float() / member.temperature for member in self.members],
                         dim=1)  # (B, sum d)

    def item_embeddings(self, batch: ItemBatch) -> torch.Tensor:
        return torch.cat([member.item_embeddings(batch).float() for member in self.members], dim=1)  # (B, sum d)


def spec_from_dict(raw: dict[str, Any]) -> ModelSpec | EnsembleSpec:
    """The spec a model.json holds: a single model's, or an ensemble's (checked: `check_members`)."""
    if ENSEMBLE_KEY not in raw:
        return ModelSpec.from_dict(raw)
    members = raw[ENSEMBLE_KEY]
    if not isinstance(members, list):
        raise ValueError(f"{ENSEMBLE_KEY!r} must list the members' specs")
    specs = [ModelSpec.from_dict(member) for member in members]
    check_members(specs)
    return EnsembleSpec(tuple(specs))


def model_for_spec(spec: ModelSpec | EnsembleSpec) -> TwoTower | Ensemble:
    """An untrained model of `spec`."""
    return Ensemble(list(spec.members)) if isinstance(spec, EnsembleSpec) else TwoTower(spec)


def ensemble_of(models: list[TwoTower]) -> Ensemble:
    """An Ensemble holding copies of the trained `models`' weights."""
    ensemble = Ensemble([model.spec for model in models])
    for member, model in zip(ensemble.members, models):
        member.load_state_dict(model.state_dict())
    return ensemble.eval()
