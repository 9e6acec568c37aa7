"""One retrieval interface, two implementations: exact (matrix product + top-K) and approximate (FAISS).

Scores are inner products. With L2-normalised towers that is the cosine the model was trained on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from booktower.config.serving import IndexConfig


class RetrievalIndex(Protocol):
    """Top-k inner-product search over a fixed set of row vectors (row i = item index i)."""

    kind: str

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, d) float32 -> (scores (Q, k') float32, ids (Q, k') int64), k' = min(k, len), best first.

        An approximate index may return fewer than k' real hits; missing slots have id -1 and score -inf.
        """
        ...

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; they get the next indices."""
        ...


def _as_queries(queries: np.ndarray) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    return queries


class ExactIndex:
    """Brute force: one matrix product and a top-k. Exact, and fast enough for ~10^5 items on a CPU."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))  # (n, d)

    def __len__(self) -> int:
        return self._vectors.shape[0]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors.numpy()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), len(self))
        q = torch.from_numpy(_as_queries(queries))  # (Q, d)
        with torch.inference_mode():
            scores = q @ self._vectors.T  # (Q, n)
            top = torch.topk(scores, k, dim=1, sorted=True)
        return top.values.numpy(), top.indices.numpy().astype(np.int64)

    def scores(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact scores of one query (d,) against chosen rows (m,)."""
        return self.vectors[ids] @ _as_queries(queries)[0]  # (m,)

    def add(self, vectors: np.ndarray) -> None:
        extra = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        self._vectors = torch.cat([self._vectors, extra], dim=0)


class FaissIndex:
    """FAISS HNSW or IVF-Flat with inner-product metric; keeps the vectors for exact fallbacks."""

    def __init__(self, vectors: np.ndarray, config: IndexConfig) -> None:
        import faiss

        if config.kind not in ("hnsw", "ivf"):
            raise ValueError(f"FaissIndex builds 'hnsw' or 'ivf', not {config.kind!r}")
        self.kind = config.kind
        self._config = config
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        d = vectors.shape[1]
        if config.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.hnsw_ef_construction
            index.hnsw.efSearch = config.hnsw_ef_search
        else:
            # FAISS wants ~39 training points per list; a small catalogue gets fewer lists, not a warning storm.
            nlist = max(1, min(config.ivf_nlist, vectors.shape[0] // 39))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = min(config.ivf_nprobe, nlist)
            self._quantizer = quantizer  # the IVF index does not own it: keep it alive
        index.add(vectors)
        self._index = index
        self._vectors = vectors

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), len(self))
        scores, ids = self._index.search(_as_queries(queries), k)  # (Q, k) each
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index.add(vectors)
        self._vectors = np.concatenate([self._vectors, vectors], axis=0)


def build_index(vectors: np.ndarray, config: IndexConfig) -> ExactIndex | FaissIndex:
    """The index named by `config.kind`; unknown kinds are rejected by the config itself."""
    if config.kind == "exact":
        return ExactIndex(vectors)
    return FaissIndex(vectors, config)


@dataclass(frozen=True)
class AnnReport:
    """How an approximate index compares with exact search on the same queries."""

    kind: str
    k: int
    n_items: int
    n_queries: int
    recall: float
    exact_ms_per_query: float
    ann_ms_per_query: float
    build_seconds: float

    @property
    def speedup(self) -> float:
        return self.exact_ms_per_query / max(self.ann_ms_per_query, 1e-9)

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "kind": self.kind, "k": self.k, "n_items": self.n_items, "n_queries": self.n_queries,
            f"recall@{self.k}": round(self.recall, 4), "exact_ms_per_query": round(self.exact_ms_per_query, 4),
            "ann_ms_per_query": round(self.ann_ms_per_query, 4), "speedup": round(self.speedup, 2),
            "build_seconds": round(self.build_seconds, 3),
        }


def _timed_search(index: RetrievalIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Ids and milliseconds per query, searching one query at a time as a service does."""
    start = time.perf_counter()
    ids = np.stack([index.search(q, k)[1][0] for q in queries])  # (Q, k)
    return ids, (time.perf_counter() - start) * 1000.0 / max(len(queries), 1)


def compare_with_exact(vectors: np.ndarray, queries: np.ndarray, config: IndexConfig, k: int = 10) -> AnnReport:
    """recall@k of the approximate index against exact top-k (fraction of exact hits found) and its speed-up."""
    k = min(k, len(vectors))
    exact = ExactIndex(vectors)
    start = time.perf_counter()
    ann = build_index(vectors, config)
    build = time.perf_counter() - start
    truth, exact_ms = _timed_search(exact, queries, k)
    found, ann_ms = _timed_search(ann, queries, k)
    hits = sum(len(np.intersect1d(t, f[f >= 0])) for t, f in zip(truth, found))
    recall = hits / max(truth.size, 1)
    return AnnReport(config.kind, k, len(vectors), len(queries), recall, exact_ms, ann_ms, build)
