"""The ASGI entry point uvicorn imports in each worker process (`--workers N` needs an import string).

The bundle folder and index kind travel in environment variables set by `booktower serve`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

BUNDLE_ENV = "BOOKTOWER_BUNDLE"
INDEX_ENV = "BOOKTOWER_INDEX"
THREADS_ENV = "BOOKTOWER_TORCH_THREADS"


def app_from_env() -> FastAPI:
    """One worker's app: torch kept to few threads (workers share the cores), the bundle loaded and verified."""
    import torch

    from booktower.serving.api import create_app
    from booktower.serving.service import Recommender

    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    bundle = os.environ.get(BUNDLE_ENV)
    if not bundle:
        raise RuntimeError(f"set {BUNDLE_ENV} to a bundle folder (booktower serve does this)")
    recommender = Recommender.from_bundle(Path(bundle), index_kind=os.environ.get(INDEX_ENV) or None)
    return create_app(recommender)
