"""EASE (Steck 2019): closed-form item-item weights B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1.

Fitted on the N most popular items so the N x N inverse stays bounded; other items score 0.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

from booktower.evaluation.baselines.base import Recommender

log = logging.getLogger(__name__)


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """(N, N) float64 Gram matrix -> EASE weights with a zero diagonal (float32). Inverts through Cholesky."""
    from scipy.linalg import lapack

    gram = gram.astype(np.float64, copy=False)
    gram[np.diag_indices_from(gram)] += lam
    chol, info = lapack.dpotrf(gram, lower=True, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Cholesky failed (info={info}); increase baselines.ease_lambda")
    inv, info = lapack.dpotri(chol, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverse failed (info={info})")
    inv = np.tril(inv) + np.tril(inv, -1).T  # dpotri fills one triangle only
    weights = inv / (-np.diag(inv))[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


class EASE(Recommender):
    name = "ease"

    def __init__(self, lam: float = 500.0, max_items: int | None = 20000) -> None:
        super().__init__()
        self.lam = lam
        self.max_items = max_items

    def _fit(self, matrix: sp.csr_matrix) -> None:
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        n = matrix.shape[1] if self.max_items is None else min(self.max_items, matrix.shape[1])
        # stable sort: equal counts keep index order, so the chosen item set is deterministic
        self.items = np.sort(np.argsort(-counts, kind="stable")[:n])
        sub = sp.csc_matrix(matrix[:, self.items], dtype=np.float64)
        log.info("EASE: inverting a %d x %d Gram matrix", n, n)
        gram = np.asarray((sub.T @ sub).toarray())
        self.weights = torch.from_numpy(ease_weights(gram, self.lam))  # (N, N)
        self.n_items = matrix.shape[1]

    def score(self, users: np.ndarray) -> torch.Tensor:
        known = self.matrix[users][:, self.items]  # (U, N) sparse
        dense = torch.from_numpy(np.asarray(known.toarray(), dtype=np.float32))
        out = torch.zeros(len(users), self.n_items)  # (U, n_items): items outside the N score 0
        out[:, torch.from_numpy(self.items)] = dense @ self.weights
        return out
