"""ModelSpec: everything needed to rebuild a TwoTower, as plain JSON-serialisable dataclasses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from booktower.config.loading import ConfigError
from booktower.config.model import ModelConfig, TowerConfig
from booktower.data.types import Ragged, SideFeatures

MAX_BAG_WIDTH = 32
"""Codes kept per book and field: the first 32 (title tokens, in title order). The item tower itself reads whole
bags; a longer bag is cut here only, to bound the (books x width) buffer."""


def bag_width(bags: Ragged) -> int:
    """The buffer width for a field: its longest bag, capped at MAX_BAG_WIDTH, at least 1."""
    lengths = np.diff(bags.offsets)
    return int(min(max(int(lengths.max()) if len(lengths) else 0, 1), MAX_BAG_WIDTH))


def content_widths(features: SideFeatures) -> tuple[dict[str, int], int]:
    """({categorical field: width}, title-token width or 0) of the item side's bags."""
    fields = {f.name: bag_width(f.bags) for f in sorted(features.categorical, key=lambda f: f.name)}
    return fields, bag_width(features.text) if features.text is not None else 0


@dataclass(frozen=True)
class SideSpec:
    """One tower's inputs and layers. A width of 0 switches that input off."""

    n_ids: int  # ID rows (vocabulary size) of the ID-keyed tables
    id_dim: int  # 0 = no ID embedding (the augmented vector, if any, is still ID-keyed)
    numeric_dim: int  # engineered numeric features; 0 = none
    feature_hidden: list[int]
    categorical: dict[str, int]  # field name -> cardinality
    categorical_dim: int
    text_buckets: int  # 0 = no title tokens
    text_dim: int
    hidden: list[int]
    dropout: float
    id_dropout: float
    augment_dim: int  # width of the DAT augmented vector a_u / a_v; 0 = off


@dataclass(frozen=True)
class HistorySpec:
    pooling: str  # none | mean | recency | attention
    max_length: int
    recency_half_life: float
    attention_heads: int
    attention_layers: int
    last_items: int = 0  # a second, short-term input: mean of the last N items (0 = off)
    own_table: bool = False  # pool a separate item table instead of the item tower's ID table
    content_fields: dict[str, int] = field(default_factory=dict)  # item bag fields pooled too -> codes kept per book
    content_text: int = 0  # title tokens kept per book for the pooled title (0 = not pooled)


@dataclass(frozen=True)
class ModelSpec:
    user: SideSpec
    item: SideSpec
    history: HistorySpec
    output_dim: int
    fusion: str
    normalize: bool
    temperature: float
    sparse: bool
    format: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelSpec:
        raw = dict(raw)
        return cls(
            user=SideSpec(**raw.pop("user")), item=SideSpec(**raw.pop("item")),
            history=HistorySpec(**raw.pop("history")), **raw,
        )


def _side_spec(tower: TowerConfig, features: SideFeatures, n_ids: int, augment_dim: int) -> SideSpec:
    use = tower.use_features
    return SideSpec(
        n_ids=n_ids,
        id_dim=tower.id_dim if tower.use_id else 0,
        numeric_dim=int(features.numeric.shape[1]) if use else 0,
        feature_hidden=list(tower.feature_hidden),
        categorical={f.name: f.cardinality for f in features.categorical} if use else {},
        categorical_dim=tower.categorical_dim,
        text_buckets=int(features.text_buckets) if use and features.text is not None else 0,
        text_dim=tower.text_dim,
        hidden=list(tower.hidden),
        dropout=tower.dropout,
        id_dropout=tower.id_dropout,
        augment_dim=augment_dim,
    )


def spec_from_config(
    config: ModelConfig, user_features: SideFeatures, item_features: SideFeatures, n_users: int, n_items: int
) -> ModelSpec:
    """The architecture for this data: feature widths and vocabulary sizes come from the prepared data."""
    dat = config.dat
    h = config.history
    item = _side_spec(config.item, item_features, n_items, dat.augment_dim if dat.augment and dat.augment_items else 0)
    fields, text = _content_widths(config, item_features, item)
    return ModelSpec(
        user=_side_spec(config.user, user_features, n_users, dat.augment_dim if dat.augment and dat.augment_users else 0),
        item=item,
        history=HistorySpec(h.pooling, h.max_length, h.recency_half_life, h.attention_heads, h.attention_layers,
                            h.last_items, h.own_table, fields, text),
        output_dim=config.output_dim,
        fusion=config.fusion,
        normalize=config.normalize,
        temperature=config.temperature,
        sparse=config.sparse_ids,
    )


def _content_widths(config: ModelConfig, item_features: SideFeatures, item: SideSpec) -> tuple[dict[str, int], int]:
    """model.history.content: the item tower's bag fields (and title tokens) to pool, with their code widths."""
    if not config.history.content:
        return {}, 0
    fields, text = content_widths(item_features)
    fields = {name: width for name, width in fields.items() if name in item.categorical}
    text = text if item.text_buckets else 0
    if not fields and not text:
        raise ConfigError("model.history.content pools the books' categorical fields and title tokens, and this "
                          "item tower has none. Fix: map data.columns.item_author / item_categories / item_title "
                          "(with model.item.use_features: true), or set model.history.content: false")
    return fields, text
