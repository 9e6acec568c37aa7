"""The training task: wires the towers, the negatives and the losses for one batch. Holds no loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from booktower import native
from booktower.config.training import LossConfig
from booktower.data.samplers import (NegativeSampler, accidental_hit_mask, accidental_hit_pairs, accidental_hits,
                                     gather_rows)
from booktower.models.batches import SideTensors
from booktower.models.indexing import distinct_rows
from booktower.models.two_tower import TwoTower
from booktower.training import losses
from booktower.training.batching import TrainBatch, TrainingData


@dataclass(frozen=True)
class Candidates:
    """Row b's candidates: logits (B, C), the column of its positive, accidental hits, logQ terms."""

    scores: torch.Tensor  # (B, C) <p_u, p_v> / temperature (raw cosines for cosine_contrastive)
    positive: torch.Tensor  # (B,)
    invalid: torch.Tensor | None  # (B, C)
    log_q: torch.Tensor  # (B, C) or (C,)


@dataclass(frozen=True)
class InBatchPool:
    """Candidates shared by every row: items (C,), their vectors (C, d), row b's positive column, and how many
    positives and sampled negatives the pool holds (the logQ counts)."""

    items: torch.Tensor  # (C,)
    vectors: torch.Tensor  # (C, d)
    positive: torch.Tensor  # (B,)
    n_positives: int
    n_sampled: int


class TrainTask:
    """loss = main + l1 * loss_u + l2 * loss_v + l3 * loss_CA; every part can be switched off."""

    def __init__(self, model: TwoTower, data: TrainingData, users: SideTensors, items: SideTensors,
                 sampler: NegativeSampler, n_negatives: int, loss: LossConfig, item_category: torch.Tensor,
                 dropout_generator: torch.Generator | None = None) -> None:
        self.model, self.data, self.users, self.items = model, data, users, items
        self.sampler, self.n_negatives, self.config = sampler, n_negatives, loss
        self.item_category = item_category  # (n_items,) -1 = none
        self.use_cal = loss.cal_weight > 0 and bool((item_category >= 0).any())
        self.generator = dropout_generator
        # The paper's BCE draws S negatives per positive; every other case shares one set per batch.
        self.per_row = loss.main == "bce" and not sampler.uses_in_batch
        # Under DDP (set by the trainer): (rank, world size); in-batch candidates are gathered from every rank.
        self.rank, self.world_size = 0, 1
        # The in-batch sampled softmax in few passes over the (B, C) logits (`_fused_softmax`); False runs the
        # general path (the reference the tests and the throughput benchmark compare it with).
        self.fused = True
        # The fused path on the CPU: losses.blocked_in_batch_softmax with this many rows per block (measured best
        # of 256-2,048); 0 = one (B, C) logit matrix and a separate backward: the GPU path, where the blocks were
        # not measured (their bounds cost a host sync per step).
        self.softmax_block_rows = 1024 if data.device.type == "cpu" else 0
        self.compile = True  # the unblocked path on CUDA: torch.compile its passes over the logits
        # Fixed shapes and no host sync (`static_shapes`): what training/graphed.py captures in a CUDA graph.
        self.static = False

    def replica(self, model: TwoTower, sampler: NegativeSampler, generator: torch.Generator | None) -> "TrainTask":
        """The same task on another model (a worker thread's), drawing from its own sampler and generator."""
        task = TrainTask(model, self.data, self.users, self.items, sampler, self.n_negatives, self.config,
                         self.item_category, generator)
        task.fused, task.softmax_block_rows, task.compile = self.fused, self.softmax_block_rows, self.compile
        if self.static:
            task.static_shapes()
        return task

    def static_shapes(self) -> None:
        """Every op of `losses` from now on has shapes fixed by the batch size and needs no host sync: candidate
        books encoded without deduplication, bags padded to a fixed width, accidental hits as a dense mask, the
        unblocked softmax. The model must give dense table gradients (TwoTower.use_dense_gradients); only the
        in-batch sampled softmax is supported (graphed.graph_blockers says what else is not)."""
        self.static = True
        self.softmax_block_rows = 0
        _ = self.data.positive_keys  # made here, outside any traced or captured step
        if not self.users.padded:
            self.users, self.items = self.users.with_padded_bags(), self.items.with_padded_bags()

    def draw_negatives(self, batch_size: int) -> torch.Tensor:
        """This batch's sampled negatives, on the data's device: (S,) shared, or (B, S) for per-row BCE."""
        if self.n_negatives == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.data.device)
        rows = batch_size if self.per_row else None
        return self.sampler.sample(self.n_negatives, rows, self.data.device)

    def _encode_items(self, items: torch.Tensor):
        """The item tower's output for the distinct `items` and each entry's row in it (None: one row per entry,
        in order, the static path)."""
        if self.static:
            return self.model.encode_item(self.items.item_batch(items), self.generator), None
        distinct, inverse = distinct_rows(items, self.data.n_items)
        out = self.model.encode_item(self.items.item_batch(distinct), self.generator)
        return out, inverse

    def _in_batch_pool(self, batch: TrainBatch, pos_vec: torch.Tensor, neg_vec: torch.Tensor,
                       negatives: torch.Tensor) -> InBatchPool:
        """The shared candidates: this batch's positives then its sampled negatives; under DDP those of every
        rank (W*B positives then W*S negatives, gathered with gradients so each rank's item vectors also learn
        from the other ranks' rows)."""
        b, s, w = len(batch.items), self.n_negatives, self.world_size
        positive = self.rank * b + torch.arange(b, device=pos_vec.device)  # (B,)
        if w == 1:
            return InBatchPool(torch.cat([batch.items, negatives]), torch.cat([pos_vec, neg_vec]), positive, b, s)
        from booktower.training.distributed import gather, gather_with_grad

        cand = torch.cat([gather(batch.items), gather(negatives)])  # (C,) = (W*B + W*S,)
        vectors = gather_with_grad(torch.cat([pos_vec, neg_vec])).view(w, b + s, -1)  # rank-major
        vectors = torch.cat([vectors[:, :b].reshape(w * b, -1), vectors[:, b:].reshape(w * s, -1)])  # (C, d)
        return InBatchPool(cand, vectors, positive, w * b, w * s)

    def candidates(self, batch: TrainBatch, user_vec: torch.Tensor, pos_vec: torch.Tensor,
                   neg_vec: torch.Tensor, negatives: torch.Tensor) -> Candidates:
        """Logits of the positives and negatives, in-batch or not, shared or per row."""
        b, s = len(batch.items), self.n_negatives
        if self.sampler.uses_in_batch:
            pool = self._in_batch_pool(batch, pos_vec, neg_vec, negatives)
            scores = user_vec @ pool.vectors.T  # (B, C)
            log_q = self._log_q(pool.items, pool.n_positives, pool.n_sampled)  # (C,)
            return Candidates(scores, pool.positive, self._hits(batch, pool.items), log_q)
        pos_scores = (user_vec * pos_vec).sum(-1, keepdim=True)  # (B, 1)
        if self.per_row:
            neg_scores = torch.einsum("bd,bsd->bs", user_vec, neg_vec)  # (B, S)
        else:
            neg_scores = user_vec @ neg_vec.T  # (B, S)
        scores = torch.cat([pos_scores, neg_scores], dim=1)  # (B, 1 + S)
        log_q = torch.cat([self._log_q(batch.items, b, s)[:, None], self._log_q(negatives, b, s).expand(b, s)], dim=1)
        hits = self._hits(batch, negatives)  # (B, S)
        invalid = None if hits is None else torch.cat([torch.zeros_like(hits[:, :1]), hits], dim=1)
        return Candidates(scores, torch.zeros(b, dtype=torch.int64, device=scores.device), invalid, log_q)

    def _log_q(self, items: torch.Tensor, n_positives: int, n_sampled: int) -> torch.Tensor:
        """The logQ term of each candidate, scaled by `logq_weight`."""
        log_q = self.sampler.log_expected_count(items, n_positives, n_sampled)
        return log_q if self.config.logq_weight == 1.0 else log_q * self.config.logq_weight

    def _hits(self, batch: TrainBatch, candidates: torch.Tensor) -> torch.Tensor | None:
        if not self.config.mask_accidental_hits:
            return None
        pos_items, pos_rows = gather_rows(self.data.pos_offsets, self.data.pos_items, batch.users)
        return accidental_hits(candidates, pos_items, pos_rows, len(batch.users), self.data.n_items)

    def fuses_in_batch_softmax(self) -> bool:
        """Whether `losses` takes the fused in-batch sampled softmax (`_fused_softmax`)."""
        return self.fused and self.sampler.uses_in_batch and self.config.main == "sampled_softmax"

    def _fused_softmax(self, batch: TrainBatch, query: torch.Tensor, pool: InBatchPool) -> torch.Tensor:
        """losses.sampled_softmax over the in-batch pool, same value and gradient, in fewer passes over the
        (B, C) logits: the accidental hits are found as (row, column) coordinates (no dense mask); on the CPU
        losses.blocked_in_batch_softmax then computes loss and gradients block by block in place, elsewhere one
        product writes the logits (bf16 under autocast), the hits are set to -inf and losses.softmax_cross_entropy
        subtracts logQ inside its two passes over them."""
        log_q = None
        if self.config.logq_correction:
            log_q = self._log_q(pool.items, pool.n_positives, pool.n_sampled)  # (C,)
        masked = None
        if self.config.mask_accidental_hits and self.static:
            masked = accidental_hit_mask(batch.users, pool.items, self.data.positive_keys, self.data.n_items,
                                         pool.positive)  # (B, C)
        elif self.config.mask_accidental_hits:
            # a row's own positive column always stays
            masked = native.hit_pairs(pool.items, batch.users, self.data.pos_offsets, self.data.pos_items,
                                      self.data.n_items, own=pool.positive)
            if masked is None:  # no C kernels, or not on the CPU
                pos_items, pos_rows = gather_rows(self.data.pos_offsets, self.data.pos_items, batch.users)
                rows, cols = accidental_hit_pairs(pool.items, pos_items, pos_rows, self.data.n_items)
                keep = cols != pool.positive[rows]
                masked = (rows[keep], cols[keep])
        autocast = torch.is_autocast_enabled(query.device.type)
        if self.softmax_block_rows and not autocast:
            bias = None if log_q is None else log_q.neg()
            return losses.blocked_in_batch_softmax(query, pool.vectors, bias, pool.positive, masked,
                                                   self.softmax_block_rows)
        z = query @ pool.vectors.T  # (B, C), bf16 under autocast: kept so, never copied to float32
        if masked is not None:
            # Outside autograd: recorded, index_put_'s backward would clone the whole (B, C) gradient to zero
            # these entries, and the loss's gradient there is already 0 (the softmax of a -inf logit).
            with torch.no_grad():
                if self.static:
                    # a Python scalar: with a tensor value the CUDA kernel reads it back with .item(), a sync
                    # that fails a CUDA-graph capture (seen on an H200)
                    z.masked_fill_(masked, float("-inf"))
                else:
                    z.index_put_(masked, z.new_full((), float("-inf")))  # new_full: no host-to-device copy
        return losses.softmax_cross_entropy(z, pool.positive, log_q, self.compile)

    def main_loss(self, c: Candidates) -> torch.Tensor:
        kind = self.config.main
        if kind == "cosine_contrastive":
            return losses.cosine_contrastive(c.scores, c.positive, c.invalid, self.config.contrastive_margin)
        logits = c.scores  # already divided by the temperature (folded into the user vectors)
        log_q = c.log_q if self.config.logq_correction else None
        if kind == "bce":
            return losses.sampled_bce(logits, c.positive, c.invalid, log_q)
        return losses.sampled_softmax(logits, c.positive, c.invalid, log_q)

    def losses(self, batch: TrainBatch, negatives: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The weighted parts of the loss for one batch; their sum is what backward runs on. `negatives`: the
        sampled negatives to use (default: drawn from the sampler)."""
        user = self.model.encode_user(self.users.user_batch(batch.users, history=batch.history), self.generator)
        if negatives is None:
            negatives = self.draw_negatives(len(batch.items))
        item_out, inverse = self._encode_items(torch.cat([batch.items, negatives.flatten()]))
        # index_select, not advanced indexing: its backward is an index_add, ~0.1 ms per call less on the CPU
        vectors = item_out.vector if inverse is None else item_out.vector.index_select(0, inverse)  # (B + S', d)
        b = len(batch.items)
        pos_vec, neg_vec = vectors[:b], vectors[b:].view(*negatives.shape, vectors.shape[1])
        # Dividing the (B, d) user vectors by the temperature is cheaper than dividing the (B, C) logits.
        query = user.vector if self.config.main == "cosine_contrastive" else user.vector / self.model.temperature
        if self.fuses_in_batch_softmax():
            parts = {"main": self._fused_softmax(batch, query, self._in_batch_pool(batch, pos_vec, neg_vec, negatives))}
        else:
            parts = {"main": self.main_loss(self.candidates(batch, query, pos_vec, neg_vec, negatives))}
        cfg = self.config
        if cfg.amm_user_weight > 0 and user.augmented is not None:
            parts["amm_user"] = cfg.amm_user_weight * losses.mimic_loss(user.augmented, pos_vec, cfg.amm_reduction)
        if cfg.amm_item_weight > 0 and item_out.augmented is not None:
            pos_aug = item_out.augmented[:b] if inverse is None else item_out.augmented.index_select(0, inverse[:b])
            parts["amm_item"] = cfg.amm_item_weight * losses.mimic_loss(pos_aug, user.vector, cfg.amm_reduction)
        if self.use_cal:
            cal = losses.category_alignment(pos_vec, self.item_category[batch.items], cfg.cal_min_items)
            parts["cal"] = cfg.cal_weight * cal
        return parts
