"""Serving, tracking and sweep configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from booktower.config._base import StrictModel


class IndexConfig(StrictModel):
    """Retrieval index."""

    kind: Literal["exact", "hnsw", "ivf"] = "exact"
    """`exact`: matrix product + top-K. `hnsw` / `ivf`: approximate FAISS indexes (inner product)."""
    hnsw_m: int = Field(32, ge=4)
    """HNSW: links per node."""
    hnsw_ef_search: int = Field(128, ge=1)
    """HNSW: candidate list size at query time (higher = better recall, slower)."""
    hnsw_ef_construction: int = Field(200, ge=1)
    """HNSW: candidate list size while building."""
    ivf_nlist: int = Field(256, ge=1)
    """IVF: number of coarse clusters."""
    ivf_nprobe: int = Field(16, ge=1)
    """IVF: clusters searched per query."""
    overfetch: int = Field(4, ge=1)
    """Candidates fetched per requested result before filters are applied (multiplier)."""


def with_index_kind(index: IndexConfig, kind: str) -> IndexConfig:
    """`index` with another kind, validated (model_copy would let any string through to FAISS)."""
    return IndexConfig.model_validate({**index.model_dump(), "kind": kind})


class ServingConfig(StrictModel):
    index: IndexConfig = Field(default_factory=IndexConfig)
    max_k: int = Field(200, ge=1)
    """Largest k a request may ask for."""
    max_history: int = Field(500, ge=1)
    """Largest history an anonymous request may carry."""
    max_body_bytes: int = Field(65536, ge=1024)
    """Largest request body accepted (bytes); larger ones get 413 before they are parsed."""


class TrackingConfig(StrictModel):
    """Experiment tracking (off by default)."""

    mlflow: bool = False
    """Log params, per-epoch metrics, final metrics, report and model to MLflow."""
    mlflow_uri: str = "sqlite:///mlruns.db"
    """Tracking store; a local SQLite file by default."""
    experiment: str = "booktower"
    """MLflow experiment name (created on first use)."""
    artifact_root: str | None = None
    """Artefact location of a newly created experiment; None = `mlartifacts/` beside a SQLite store's file."""
