"""Training configuration: loss, DAT loss weights, negatives, optimisers, loop control."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator

from booktower.config._base import StrictModel


class LossConfig(StrictModel):
    """The objective: main loss + l1 * loss_u + l2 * loss_v + l3 * loss_CA."""

    main: Literal["bce", "sampled_softmax", "cosine_contrastive"] = "sampled_softmax"
    """`bce`: the paper's binary cross-entropy with sampled negatives. `sampled_softmax`: softmax over in-batch
    and sampled negatives with logQ correction. `cosine_contrastive`: margin loss on cosines."""
    logq_correction: bool = True
    """Subtract log(sampling probability) from negative logits (sampled softmax)."""
    logq_weight: float = Field(1.0, ge=0.0, le=1.0)
    """Fraction of log q subtracted when `logq_correction` is on: 1 is the unbiased correction; less leaves some
    of the sampler's popularity in the learned scores (popular books rank higher). On amazon-books-2014, 0.5
    lowered validation HR@20 (0.1175 vs 0.1201), so the default stays 1."""
    mask_accidental_hits: bool = True
    """Negatives that are one of the user's training positives are masked out of the loss."""
    contrastive_margin: float = Field(0.5, ge=-1.0, le=1.0)
    """cosine_contrastive: negatives are pushed below this cosine."""
    amm_user_weight: float = Field(0.5, ge=0)
    """l1: weight of loss_u = ||a_u - stopgrad(p_v)||^2 (0 switches it off)."""
    amm_item_weight: float = Field(0.5, ge=0)
    """l2: weight of loss_v = ||a_v - stopgrad(p_u)||^2 (0 switches it off)."""
    amm_reduction: Literal["mean", "sum"] = "mean"
    """How the squared distance is reduced over the embedding dimension (then always averaged over pairs)."""
    cal_weight: float = Field(0.0, ge=0)
    """l3: weight of the Category Alignment Loss (paper: 1; 0 switches it off; skipped without categories)."""
    cal_min_items: int = Field(2, ge=2)
    """Categories with fewer items than this in a batch are skipped by CAL."""


_DEFAULT_ALPHA = 0.75


class NegativeConfig(StrictModel):
    """Negative sampling."""

    sampler: Literal["uniform", "popularity", "in_batch", "mixed"] = "mixed"
    """uniform; popularity^alpha; in-batch (the other positives of the batch); mixed = in-batch + uniform."""
    num_negatives: int = Field(128, ge=0)
    """Sampled negatives per batch (shared by the batch) or per positive for `bce`."""
    popularity_alpha: float = Field(_DEFAULT_ALPHA, ge=0)
    """popularity: sampling weight = count^alpha (read by that sampler only)."""

    @model_validator(mode="after")
    def _check(self) -> "NegativeConfig":
        if self.sampler != "in_batch" and self.num_negatives == 0:
            raise ValueError(f"negatives.num_negatives must be > 0 for sampler {self.sampler!r}")
        if self.popularity_alpha != _DEFAULT_ALPHA and self.sampler != "popularity":
            # a setting that changes nothing would pass for a tuned one (a sweep searched it, to no effect); the
            # default is let through, since every resolved config (RUN/config.yaml) writes it out
            raise ValueError(f"negatives.popularity_alpha is read by sampler: popularity only, and this config's "
                             f"sampler is {self.sampler!r}: remove popularity_alpha, or set sampler: popularity")
        return self


class OptimizerConfig(StrictModel):
    """Optimisers: SparseAdam for sparse ID tables, AdamW for the rest (or one dense optimiser)."""

    kind: Literal["hybrid", "adamw"] = "hybrid"
    """`hybrid`: SparseAdam on sparse tables + AdamW on dense parameters. `adamw`: one dense AdamW."""
    lr: float = Field(2e-3, gt=0)
    """Learning rate of the dense optimiser."""
    sparse_lr: float = Field(1e-2, gt=0)
    """Learning rate of SparseAdam."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay (dense parameters)."""
    schedule: Literal["none", "cosine", "linear_warmup"] = "none"
    """Learning-rate schedule over the planned epochs."""
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    """linear_warmup: fraction of steps spent warming up."""


class EarlyStoppingConfig(StrictModel):
    """Early stopping on a validation metric (validation split only)."""

    metric: str = "NDCG@20"
    """Validation metric to watch (higher is better): NAME@K, NAME one of HR, Recall, Precision, NDCG, MRR, MAP,
    coverage and K in evaluation.ks (checked when the config loads)."""
    patience: int = Field(3, ge=0)
    """Validations without improvement before stopping (0 disables early stopping); with
    `training.eval_every: N` that is N times as many epochs."""
    min_delta: float = Field(0.0, ge=0)
    """Smallest improvement that counts."""


class TrainingConfig(StrictModel):
    """The training loop."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: object) -> object:
        """`hogwild_workers` (session 8) is now `workers`: the tables are no longer updated Hogwild-style."""
        if isinstance(data, dict) and "hogwild_workers" in data:
            if "workers" in data:
                raise ValueError("training.hogwild_workers is the old name of training.workers: set only workers")
            # logged, not a DeprecationWarning: Python hides those from a command's user, who is the one to act
            logging.getLogger(__name__).warning("training.hogwild_workers is renamed training.workers: the old "
                                                "name still works, for now; write workers")
            data = {("workers" if key == "hogwild_workers" else key): value for key, value in data.items()}
        return data

    epochs: int = Field(10, ge=1)
    """Most epochs to train (early stopping may end sooner)."""
    batch_size: int = Field(1024, ge=1)
    """Positive interactions per step (and in-batch negatives per positive, minus one)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA when available."""
    bf16: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    compile: bool = True
    """CUDA only: fuse the in-batch softmax's passes over the (B, C) logits with torch.compile (a one-off compile
    of a few seconds; a compiler that fails gives a warning and eager PyTorch). false: eager PyTorch."""
    cuda_graph: bool | Literal["auto"] = "auto"
    """CUDA only: capture the whole training step (batch, towers, loss, backward, both optimisers) in a CUDA
    graph and replay it for every full batch (training/graphed.py). `auto` does so for a batch of up to 8,192
    rows, whose eager step waits on the host's kernel launches (an H200, amazon default at 1,024: 1.94M training
    interactions/s captured and compiled, against 75-111k/s eager; the capture has been timed at 1,024 only),
    where the step can be captured (`graph_blockers`) and the tables hold at most 64M weights; `true` asks for
    it at any batch and warns where it cannot; `false` never. The tables then take dense gradients and a masked
    LazyAdam, O(table) per step. A capture that fails gives a warning and the eager step on the same static
    shapes."""
    loss: LossConfig = Field(default_factory=LossConfig)
    negatives: NegativeConfig = Field(default_factory=NegativeConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    eval_every: int = Field(1, ge=1)
    """Validate every this many epochs."""
    max_valid_users: int | None = Field(None, ge=1)
    """Validate on a fixed random subset of users to save time (None = all)."""
    refit_on_validation: bool = False
    """After early stopping, train a fresh model (same seed) on train + validation for the best epoch count and
    score the test split with it: the protocol the baselines follow, and the newest interactions reach the
    served model. Validation metrics still come from the selection model; the saved model is the refit one. A
    learning-rate schedule keeps its planned length (`epochs`), so the refit's rates match the selected model's."""
    num_threads: int | None = Field(None, ge=1)
    """torch CPU threads (None = torch default)."""
    workers: int = Field(1, ge=1)
    """CPU only: Python threads that each compute one batch of a round, one core each, on the same model
    (training/workers.py); the round's dense update is the mean of its gradients, and the tables take its
    batches' gradients one after another. Bit-for-bit reproducible for a given value, whatever the core count
    (on the same kind of CPU and the same library builds). 1 = one step at a time, `num_threads` threads inside
    each operation. On the 2-core machines of docs/benchmarks.md, 2 workers trained the amazon-books-2014
    default 1.1-1.3x faster than 2 threads inside each step, to the same test metrics."""
    grad_clip: float | None = Field(None, gt=0)
    """Clip the dense gradients' global norm."""
    progress: bool = True
    """Show a progress bar (loss, examples/s, ETA) per epoch."""
