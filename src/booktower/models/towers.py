"""One tower: ID embedding + feature MLP + categorical/text bags + DAT augmented vector -> fusion -> MLP."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from booktower.models.batches import ItemBatch, UserBatch
from booktower.models.layers import BagEmbedding, Fusion, IdEmbedding, all_known, l2_normalize, mlp
from booktower.models.spec import SideSpec


@dataclass(frozen=True)
class TowerOutput:
    vector: torch.Tensor  # (B, d) the tower's embedding (L2-normalised when configured)
    augmented: torch.Tensor | None  # (B, d) the raw DAT augmented vector a_u / a_v (zeros for unknown ids)


class Tower(nn.Module):
    """Inputs are assembled in a fixed order: id, features, categorical fields (sorted), text, augment, extras."""

    def __init__(self, spec: SideSpec, fusion: str, output_dim: int, normalize: bool, sparse: bool,
                 extra_dims: list[int] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.normalize = normalize
        dims: list[int] = []
        self.ids = IdEmbedding(spec.n_ids, spec.id_dim, sparse) if spec.n_ids > 0 and spec.id_dim > 0 else None
        dims += [spec.id_dim] if self.ids is not None else []
        self.features = None
        if spec.numeric_dim > 0:
            *hidden, out = spec.feature_hidden or [spec.numeric_dim]
            self.features = nn.Sequential(mlp(spec.numeric_dim, hidden, out), nn.ReLU())
            dims.append(out)
        self.categorical = nn.ModuleDict(
            {name: BagEmbedding(n, spec.categorical_dim, sparse) for name, n in sorted(spec.categorical.items())})
        dims += [spec.categorical_dim] * len(self.categorical)
        self.text = BagEmbedding(spec.text_buckets, spec.text_dim, sparse) if spec.text_buckets > 0 else None
        dims += [spec.text_dim] if self.text is not None else []
        self.augment = None
        if spec.augment_dim > 0 and spec.n_ids > 0:
            self.augment = IdEmbedding(spec.n_ids, spec.augment_dim, sparse, std=0.01)
            dims.append(spec.augment_dim)
        dims += list(extra_dims or [])
        if not dims:
            raise ValueError("a tower needs at least one input (IDs, features, text or history)")
        self.fusion = Fusion(fusion, dims, spec.hidden[0] if spec.hidden else output_dim)
        hidden = spec.hidden[1:] if fusion != "concat" else spec.hidden
        self.mlp = mlp(self.fusion.out_dim, hidden, output_dim, spec.dropout)

    def _id_keep(self, ids: torch.Tensor, known: bool, generator: torch.Generator | None) -> torch.Tensor | None:
        """(B, 1) 1.0 where the ID path is used: a known id, not dropped by ID dropout in training. None: every
        row uses it (no masks to multiply). `known`: all_known(ids)."""
        dropout = self.training and self.spec.id_dropout > 0
        if not dropout and known:
            return None
        keep = (ids >= 0).unsqueeze(-1).float()
        if dropout:
            draw = torch.rand(ids.shape[0], 1, generator=generator, device=ids.device)
            keep = keep * (draw >= self.spec.id_dropout).float()
        return keep

    def content(self, batch: ItemBatch | UserBatch, text: bool = True) -> list[torch.Tensor]:
        """The non-ID inputs: feature MLP, categorical bags, title tokens."""
        parts = []
        if self.features is not None:
            parts.append(self.features(batch.numeric))  # (B, f)
        for name, bag in self.categorical.items():
            parts.append(bag(batch.categorical[name]))  # (B, c)
        if text and self.text is not None and isinstance(batch, ItemBatch) and batch.text is not None:
            parts.append(self.text(batch.text))  # (B, t)
        return parts

    def forward(self, batch: ItemBatch | UserBatch, extras: list[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> TowerOutput:
        keep, known = None, False
        if self.ids is not None or self.augment is not None:
            known = all_known(batch.ids)  # once: the lookups below skip their own masks on it too
            keep = self._id_keep(batch.ids, known, generator)  # (B, 1) or None
        parts = []
        if self.ids is not None:
            rows = self.ids(batch.ids, known)  # (B, id_dim)
            parts.append(rows if keep is None else rows * keep)
        parts += self.content(batch)
        augmented = None
        if self.augment is not None:
            augmented = self.augment(batch.ids, known)  # (B, d)
            parts.append(augmented if keep is None else augmented * keep)
        parts += list(extras or [])
        out = self.mlp(self.fusion(parts))  # (B, d)
        if self.normalize:
            out = l2_normalize(out.float())
        return TowerOutput(out, augmented)
