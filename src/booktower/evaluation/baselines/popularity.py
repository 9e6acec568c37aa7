"""Most popular: every reader gets the items with the most interactions in the fitted matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from booktower.evaluation.baselines.base import FoldIn


class MostPopular(FoldIn):
    name = "pop"

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self.counts = torch.from_numpy(np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel())  # (n_items,)

    def score_histories(self, histories: sp.csr_matrix) -> torch.Tensor:
        return self.counts.expand(histories.shape[0], -1).clone()  # (U, n_items)
