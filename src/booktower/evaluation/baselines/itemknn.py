"""ItemKNN: cosine similarity between item columns; a reader's score is the sum of similarities to known items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from booktower.evaluation.baselines.base import FoldIn


def cosine_item_similarity(matrix: sp.csr_matrix, neighbors: int | None = None) -> sp.csr_matrix:
    """(n_items, n_items) sparse cosine similarity, self-similarity zeroed, optionally top-`neighbors` per row."""
    cols = sp.csc_matrix(matrix, dtype=np.float32)
    norms = np.sqrt(np.asarray(cols.multiply(cols).sum(axis=0)).ravel())  # (n_items,)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    scaled = cols @ sp.diags(inv)
    sim = sp.csr_matrix(scaled.T @ scaled)  # (n_items, n_items)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    if neighbors is not None:
        sim = _keep_top(sim, neighbors)
    return sim


def _keep_top(sim: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the n largest entries of every row (the neighbour cap)."""
    rows, cols, vals = [], [], []
    for r in range(sim.shape[0]):
        start, end = sim.indptr[r], sim.indptr[r + 1]
        if end - start > n:
            keep = np.argpartition(-sim.data[start:end], n - 1)[:n] + start
        else:
            keep = np.arange(start, end)
        rows.append(np.full(len(keep), r))
        cols.append(sim.indices[keep])
        vals.append(sim.data[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=sim.shape)


class ItemKNN(FoldIn):
    name = "itemknn"

    def __init__(self, neighbors: int | None = None) -> None:
        super().__init__()
        self.neighbors = neighbors

    def _fit(self, matrix: sp.csr_matrix) -> None:
        # a neighbour cap keeps each item's strongest neighbours: rows of sim.T, i.e. columns of the score side
        sim = cosine_item_similarity(matrix, self.neighbors)
        self.similarity = sp.csr_matrix(sim.T) if self.neighbors is not None else sim

    def score_histories(self, histories: sp.csr_matrix) -> torch.Tensor:
        scores = histories @ self.similarity  # (U, n_items) sparse
        return torch.from_numpy(np.asarray(scores.toarray(), dtype=np.float32))
