"""TwoTower: a user tower (optionally reading the reader's history) and an item tower. Embeddings only."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from booktower.data.types import SideFeatures
from booktower.models.batches import ItemBatch, UserBatch
from booktower.models.history import HistoryPooler
from booktower.models.history_content import HistoryContent
from booktower.models.layers import IdEmbedding
from booktower.models.spec import HistorySpec, ModelSpec
from booktower.models.towers import Tower, TowerOutput


class TwoTower(nn.Module):
    """score(u, v) = <p_u, p_v> / temperature. Losses live in `booktower.training.losses`."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.history = None
        extra: list[int] = []
        if spec.history.pooling != "none":
            if spec.item.n_ids == 0 or spec.item.id_dim == 0:
                raise ValueError("history pooling reads the item ID embeddings: set model.item.use_id=true "
                                 "or model.history.pooling=none")
            self.history = HistoryPooler(spec.history, spec.item.id_dim)
            extra.append(spec.item.id_dim)
        # The reader side's own item table (model.history.own_table); None: history reads the item ID table.
        self.history_ids = (IdEmbedding(spec.item.n_ids, spec.item.id_dim, spec.sparse)
                            if spec.history.pooling != "none" and spec.history.own_table else None)
        self.recent = None
        if spec.history.last_items:
            recent = HistorySpec("mean", spec.history.last_items, 1.0, 1, 1)
            self.recent = HistoryPooler(recent, spec.item.id_dim)
            extra.append(spec.item.id_dim)
        self.history_content = None
        if spec.history.content_fields or spec.history.content_text:
            self.history_content = HistoryContent(spec.item.n_ids, spec.history.content_fields,
                                                  spec.history.content_text)
            extra += [spec.item.categorical_dim] * len(spec.history.content_fields)
            extra += [spec.item.text_dim] if spec.history.content_text else []
        self.content_only_books = 0  # books past the ID rows whose content a history pools (add_content_only_books)
        self.user_tower = Tower(spec.user, spec.fusion, spec.output_dim, spec.normalize, spec.sparse, extra)
        self.item_tower = Tower(spec.item, spec.fusion, spec.output_dim, spec.normalize, spec.sparse)
        self.sparse_gradients = spec.sparse

    def use_dense_gradients(self) -> None:
        """From now on every table's gradient is a dense (rows, dim) tensor: fixed shapes, as a CUDA graph needs
        (training/graphed.py). The weights and the spec are unchanged, so a saved model does not record it."""
        self.sparse_gradients = False
        for module in self.modules():
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                module.sparse = False

    @property
    def temperature(self) -> float:
        return self.spec.temperature

    def history_table(self) -> torch.Tensor:
        """(n_items, id_dim): the item vectors a reader's history is pooled from."""
        ids = self.history_ids if self.history_ids is not None else self.item_tower.ids
        assert ids is not None
        return ids.table.weight

    def pooled_history(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) item indices (-1 = padding) -> (B, id_dim), read through `history_table`."""
        assert self.history is not None
        history = history[:, -self.spec.history.max_length:]
        return self.history(self.history_table(), history, self.sparse_gradients,
                            self.content_only_books > 0)  # (B, id_dim)

    def encode_user(self, batch: UserBatch, generator: torch.Generator | None = None) -> TowerOutput:
        extras = []
        if self.history is not None:
            if batch.history is None:
                raise ValueError("this model pools the reader's history: the UserBatch needs `history`")
            extras.append(self.pooled_history(batch.history))
            if self.recent is not None:
                extras.append(self.recent(self.history_table(), batch.history[:, -self.spec.history.last_items:],
                                          self.sparse_gradients, self.content_only_books > 0))  # (B, id_dim)
            if self.history_content is not None:
                extras += self.pooled_content(batch.history)
        return self.user_tower(batch, extras, generator)

    def pooled_content(self, history: torch.Tensor) -> list[torch.Tensor]:
        """(B, L) item indices -> one (B, dim) per pooled content field: the item tower's own bag tables, pooled
        with the history's weights."""
        assert self.history is not None and self.history_content is not None
        history = history[:, -self.spec.history.max_length:]
        tower = self.item_tower
        tables = [tower.categorical[name].bag.weight for name in self.history_content.fields]
        if self.history_content.has_text:
            assert tower.text is not None
            tables.append(tower.text.bag.weight)
        weights = self.history.weights(history, tables[0].dtype)  # (B, L)
        return self.history_content(tables, history, weights, self.sparse_gradients)

    def fill_history_content(self, item_features: SideFeatures) -> None:
        """Give the content pooling every book's bag codes (training only: a saved model carries them)."""
        if self.history_content is not None:
            self.history_content.fill(item_features)

    def add_content_only_books(self, codes: list[np.ndarray]) -> None:
        """Let histories hold books added after training (indices from `spec.item.n_ids` up, in this order): no
        ID row, so the ID pools give them a zero vector, but their content (`codes`: each content table's rows,
        as `HistoryContent.codes_of` gives them) is pooled like a trained book's. For serving only: the state
        grows and no longer loads into a model built from the spec."""
        if self.history_content is None:
            raise ValueError("this model does not pool the content of a history (model.history.content)")
        tower = self.item_tower
        sizes = [tower.categorical[name].bag.num_embeddings for name in self.history_content.fields]
        sizes += [tower.text.bag.num_embeddings] if self.history_content.has_text and tower.text is not None else []
        for rows, size, name in zip(codes, sizes, self.history_content.fields + ["title tokens"]):
            if rows.size and (rows.min() < -1 or rows.max() >= size):
                raise ValueError(f"{name} codes outside [-1, {size}) for the added books")
        self.history_content.append(codes)
        self.content_only_books += int(codes[0].shape[0]) if codes else 0

    def encode_item(self, batch: ItemBatch, generator: torch.Generator | None = None) -> TowerOutput:
        return self.item_tower(batch, None, generator)

    def user_embeddings(self, batch: UserBatch) -> torch.Tensor:
        return self.encode_user(batch).vector  # (B, d)

    def item_embeddings(self, batch: ItemBatch) -> torch.Tensor:
        return self.encode_item(batch).vector  # (B, d)
