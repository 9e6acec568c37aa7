"""Starting points for the ID tables (model.item.id_init / model.user.id_init).

A truncated SVD of the training interactions X (readers x books) gives each book the factors V sqrt(S) and each
reader U sqrt(S): a reader's and a book's inner product is X's best low-rank approximation (who read what), and
two books' factors point the same way as far as the same readers read them (their Gram matrix is V S V^T, the
square root of the co-read counts X^T X), the memory an item-based model such as ItemKNN works from. An ID table
started there holds it from the first step; on a small log, where the ID vectors barely move in training, it is
most of what they learn.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds


def svd_factors(matrix: sp.csr_matrix, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(readers (n_users, dim), books (n_items, dim)) float64: U sqrt(S) and V sqrt(S) of the `dim` largest
    singular values, columns past the matrix's rank left 0. `rng` draws ARPACK's start vector (the same `rng`
    state, the same factors)."""
    n_users, n_items = matrix.shape
    users, items = np.zeros((n_users, dim)), np.zeros((n_items, dim))
    k = min(dim, min(matrix.shape) - 1)  # ARPACK needs k < min(shape)
    if k < 1 or matrix.nnz == 0:
        return users, items
    start = rng.standard_normal(min(matrix.shape))
    u, s, vt = svds(matrix.astype(np.float64), k=k, v0=start)
    order = np.argsort(-s)  # largest first
    root = np.sqrt(np.maximum(s[order], 0.0))
    users[:, :k] = u[:, order] * root
    items[:, :k] = vt[order].T * root
    return users, items


@torch.no_grad()
def start_from(table: torch.Tensor, factors: np.ndarray, std: float) -> None:
    """Copy `factors` into `table` (same shape), scaled so that their standard deviation is `std`."""
    if factors.shape != tuple(table.shape):
        raise ValueError(f"factors of shape {factors.shape} for an ID table of shape {tuple(table.shape)}")
    spread = float(factors.std())
    scaled = factors * (std / spread) if spread > 0 else factors
    table.copy_(torch.from_numpy(scaled).to(table.dtype))
