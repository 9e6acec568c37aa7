"""The one small recommender interface every baseline implements, and the interaction matrix it is fitted on."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp
import torch

from booktower.data.types import Interactions


def interaction_matrix(n_users: int, n_items: int, *parts: Interactions) -> sp.csr_matrix:
    """Binary (n_users, n_items) CSR matrix of the given parts (repeats count once)."""
    users = np.concatenate([p.user for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    items = np.concatenate([p.item for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


class Recommender(ABC):
    """fit(user x item matrix) then score(user indices) -> (U, n_items) float32 scores (higher = better)."""

    name: str = "recommender"

    def __init__(self) -> None:
        self._matrix: sp.csr_matrix | None = None

    @property
    def matrix(self) -> sp.csr_matrix:
        if self._matrix is None:
            raise RuntimeError(f"{self.name}: call fit(interactions) before score(users)")
        return self._matrix

    def fit(self, matrix: sp.csr_matrix) -> Recommender:
        if not sp.issparse(matrix) or matrix.ndim != 2:
            raise ValueError(f"{self.name}: fit needs a scipy sparse (n_users, n_items) matrix")
        self._matrix = sp.csr_matrix(matrix, dtype=np.float32)
        self._fit(self._matrix)
        return self

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None: ...

    @abstractmethod
    def score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) user indices -> (U, n_items) scores; a fresh tensor (evaluation masks it in place)."""

    folds_in = False
    """Whether `score_histories` scores readers outside the fitted matrix (item-based models: no refit)."""

    def score_histories(self, histories: sp.csr_matrix) -> torch.Tensor:
        """(U, n_items) binary rows of readers' books -> (U, n_items) scores, for readers the model was not
        fitted on (new readers)."""
        raise NotImplementedError(f"{self.name} scores only the readers it was fitted on")


class FoldIn(Recommender):
    """An item-based model: a reader's scores follow from their books alone, fitted reader or not."""

    folds_in = True

    def score(self, users: np.ndarray) -> torch.Tensor:
        return self.score_histories(self.matrix[users])

    @abstractmethod
    def score_histories(self, histories: sp.csr_matrix) -> torch.Tensor: ...
