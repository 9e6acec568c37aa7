"""Model configuration: the two towers, their inputs and the DAT augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from booktower.config._base import StrictModel


class HistoryConfig(StrictModel):
    """The user tower's view of the reader's earlier books (strictly before the target interaction)."""

    pooling: Literal["none", "mean", "recency", "attention"] = "mean"
    """How the history is pooled: off, mean, exponentially recency-weighted, or a small self-attention encoder."""
    max_length: int = Field(50, ge=1)
    """Most recent items kept."""
    recency_half_life: float = Field(10.0, gt=0)
    """recency: half-life in positions (the newest item weighs 1, one `half_life` older weighs 0.5)."""
    attention_heads: int = Field(2, ge=1)
    """attention: heads of the self-attention encoder."""
    attention_layers: int = Field(1, ge=1)
    """attention: layers of the self-attention encoder."""
    own_table: bool = False
    """Pool a separate item table (the reader-side "input" embeddings) instead of the item tower's ID table:
    a book as read before the target and a book as a candidate get different vectors (as in YouTube DNN). On
    amazon-books-2014 it was much worse (validation NDCG@20 0.0572 vs 0.0640): a shared table lets every book a
    reader has read train the candidate vectors too."""
    last_items: int = Field(0, ge=0)
    """Also give the user tower the mean of the reader's last N items as a second input (a short-term channel
    beside the pooled long-term one; readers of series read the next volume); 0 = off."""

    content: bool = False
    """Also pool the books' content: the item tower's embeddings of each read book's categorical fields (author,
    categories, item_categorical metadata) and title tokens, weighted as the history is (recency weights; equal
    weights with attention pooling), each a further input of the user tower. The ID vectors a history pools learn
    from reads alone; on a small log (a few reads per book) they barely train, while an author's vector learns
    from every read of every book by that author. Books added to a bundle after training (`index add`) are
    pooled too, by their content (their ID vector is zero)."""

    @model_validator(mode="after")
    def _check_last_items(self) -> "HistoryConfig":
        if self.last_items and self.pooling == "none":
            raise ValueError("model.history.last_items needs a history: set model.history.pooling too")
        if self.content and self.pooling == "none":
            raise ValueError("model.history.content pools the history: set model.history.pooling too")
        if self.last_items > self.max_length:
            raise ValueError(f"model.history.last_items ({self.last_items}) must not exceed "
                             f"model.history.max_length ({self.max_length})")
        return self


class TowerConfig(StrictModel):
    """One tower (the user and item towers share this shape)."""

    use_id: bool = True
    """Give this side an ID embedding (False: content and history only, every row is served like a cold one)."""
    id_dim: int = Field(32, ge=1)
    """ID embedding width (the item side's also embeds the reader's history)."""
    feature_hidden: list[int] = Field(default_factory=lambda: [192, 96])
    """Feature encoder MLP over the engineered numeric features (the design note's 192 -> 96)."""
    categorical_dim: int = Field(32, ge=1)
    """Width of categorical (category path, author, other) embedding bags."""
    text_dim: int = Field(32, ge=1)
    """Width of the hashed title-token EmbeddingBag."""
    hidden: list[int] = Field(default_factory=lambda: [128])
    """Tower MLP hidden layers (ReLU); the output layer is `model.output_dim`. The paper's towers are
    256-128-32; one 128 layer trained as well on amazon-books-2014 here and runs about 1.5x faster on CPU."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout inside the tower MLP."""
    id_dropout: float = Field(0.0, ge=0.0, le=1.0)
    """Probability of zeroing a row's ID embedding in training, so the content path alone stays useful."""
    id_init: Literal["normal", "svd"] = "normal"
    """How the ID table starts: normal(0, 0.05), or `svd`: the side's factors of a truncated SVD of the training
    interactions (items V sqrt(S), readers U sqrt(S)), scaled to `id_init_std`. On a small log the ID vectors
    barely move from where they start, so a start that already holds who-read-what helps: on a 600-reader
    Goodreads log, test NDCG@20 0.0520 -> 0.0618 over 3 seeds, and amazon-books-2014's validation rose in every
    seed; on movielens-100k it was slightly worse (docs/results.md, "Small logs"): check it on validation."""
    id_init_std: float = Field(0.2, gt=0)
    """With `id_init: svd`: the standard deviation the factors are scaled to (0.05, 0.2, 0.5, 1.0 tried: 0.2 was
    best on validation)."""
    use_features: bool = True
    """Feed the engineered features to this tower."""


class DATConfig(StrictModel):
    """Dual Augmented Two-tower (Yu et al., DLP-KDD 2021)."""

    augment: bool = True
    """Add the ID-keyed augmented vectors a_u, a_v to the tower inputs (needed by AMM)."""
    augment_users: bool = False
    """a_u on the user tower (the paper has it). Off by default: on amazon-books-2014 the ID-keyed reader vector
    overfit like a reader ID embedding does (validation NDCG@20 fell after epoch 3), while the item side helped."""
    augment_items: bool = True
    """a_v on the item tower."""
    augment_dim: int = Field(32, ge=1)
    """Width of a_u and a_v (paper: 32). Must equal `model.output_dim` for the mimic losses."""


class ModelConfig(StrictModel):
    """The two-tower model."""

    output_dim: int = Field(32, ge=2)
    """Embedding size of both towers' outputs (paper: 32)."""
    fusion: Literal["concat", "sum", "gate"] = "concat"
    """How ID, feature, text, categorical, history and augmented inputs are fused before the tower MLP."""
    sparse_ids: bool = True
    """ID tables produce sparse gradients (SparseAdam); False makes them dense."""
    normalize: bool = True
    """L2-normalise tower outputs (score = cosine)."""
    temperature: float = Field(0.05, gt=0)
    """Scores are divided by this before the loss."""
    user: TowerConfig = Field(default_factory=lambda: TowerConfig(use_id=False))
    """Reader tower. By default without a reader ID embedding: the pooled history and reader features describe
    the reader (on amazon-books-2014 a reader ID table overfit: test NDCG@20 0.025 with it vs 0.037 without)."""
    item: TowerConfig = Field(default_factory=TowerConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    dat: DATConfig = Field(default_factory=DATConfig)

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.dat.augment and self.dat.augment_dim != self.output_dim:
            raise ValueError(
                f"model.dat.augment_dim ({self.dat.augment_dim}) must equal model.output_dim ({self.output_dim}): "
                "a_u mimics the item tower's output vector"
            )
        if self.history.pooling != "none" and not self.item.use_id:
            raise ValueError("model.history.pooling reads the item ID embeddings: set model.item.use_id=true or "
                             "model.history.pooling=none")
        if self.history.pooling == "attention" and self.item.id_dim % self.history.attention_heads:
            raise ValueError(f"model.history.attention_heads ({self.history.attention_heads}) must divide the "
                             f"history width, model.item.id_dim ({self.item.id_dim})")
        return self
