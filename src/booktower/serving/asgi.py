"""The ASGI entry point uvicorn imports in each worker process (`--workers N` needs an import string).

The bundle folder and index kind travel in environment variables set by `booktower serve`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

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


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY set on every connection.

    With `--workers N` uvicorn hands the listening socket to spawned workers, where it comes back with proto 0;
    asyncio then skips TCP_NODELAY on accepted connections, and a keep-alive client waits ~40 ms per response
    (Nagle + delayed ACK: headers and body go out as two writes). Measured here: /health 44 ms -> 4 ms.
    """

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)
