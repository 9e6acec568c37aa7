"""ALS and BPR through the `implicit` library, seeded so a run reproduces exactly."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from booktower.evaluation.baselines.base import Recommender
from booktower.evaluation.ranking import inner_products


def _single_threaded_blas():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class _Factorisation(Recommender):
    """Score = user factors @ item factors^T."""

    def score(self, users: np.ndarray) -> torch.Tensor:
        user_f = torch.from_numpy(np.ascontiguousarray(self.user_factors[users]))  # (U, f)
        return inner_products(user_f, self.item_factors_t)  # (U, n_items)

    def _store(self, model) -> None:
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_t = torch.from_numpy(np.ascontiguousarray(np.asarray(model.item_factors, dtype=np.float32).T))


class ALS(_Factorisation):
    name = "als"

    def __init__(self, factors: int = 128, regularization: float = 0.05, alpha: float = 2.0, iterations: int = 15,
                 seed: int = 0, threads: int = 0) -> None:
        super().__init__()
        self.params = {"factors": factors, "regularization": regularization, "alpha": alpha,
                       "iterations": iterations}
        self.seed, self.threads = seed, threads

    def _fit(self, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        # each user's (item's) solve is independent of the others, so several threads stay deterministic
        with _single_threaded_blas():  # implicit parallelises itself; a BLAS pool inside it only oversubscribes
            model = AlternatingLeastSquares(**self.params, random_state=self.seed, num_threads=self.threads)
            model.fit(matrix, show_progress=False)
        self._store(model)


class BPR(_Factorisation):
    name = "bpr"

    def __init__(self, factors: int = 128, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, seed: int = 0) -> None:
        super().__init__()
        self.params = {"factors": factors, "learning_rate": learning_rate, "regularization": regularization,
                       "iterations": iterations}
        self.seed = seed

    def _fit(self, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        # Hogwild SGD races between threads; one thread makes the seed reproduce the run exactly
        with _single_threaded_blas():
            model = BayesianPersonalizedRanking(**self.params, random_state=self.seed, num_threads=1)
            model.fit(matrix, show_progress=False)
        self._store(model)
