"""The ASGI entry point uvicorn imports in each worker process (`--workers N` needs an import string).

The bundle folder, index kind and reload interval travel in environment variables set by `booktower serve`. Each
worker follows the bundle: a rewrite (`booktower index add`, a new `export` to the same folder) is served within
about `BOOKTOWER_RELOAD_S` seconds (`serve --reload-every`; default 2, 0 turns reloading off), no restart
needed. Workers reload independently, so for a moment one may answer from the new bundle and another from the old.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

BUNDLE_ENV = "BOOKTOWER_BUNDLE"
INDEX_ENV = "BOOKTOWER_INDEX"
THREADS_ENV = "BOOKTOWER_TORCH_THREADS"
RELOAD_ENV = "BOOKTOWER_RELOAD_S"


def app_from_env() -> FastAPI:
    """One worker's app: torch kept to few threads (workers share the cores), the bundle loaded and verified."""
    import torch

    from booktower.serving.api import create_app
    from booktower.serving.live import RELOAD_EVERY_S, LiveRecommender

    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    _log_booktower_info()
    bundle = os.environ.get(BUNDLE_ENV)
    if not bundle:
        raise RuntimeError(f"set {BUNDLE_ENV} to a bundle folder (booktower serve does this)")
    raw = os.environ.get(RELOAD_ENV) or str(RELOAD_EVERY_S)
    try:
        every = float(raw)
        if not every >= 0:  # also refuses nan
            raise ValueError
    except ValueError:
        raise RuntimeError(f"{RELOAD_ENV}={raw!r}: give seconds between bundle checks (0 = never reload)") from None
    live = LiveRecommender(Path(bundle), index_kind=os.environ.get(INDEX_ENV) or None,
                           check_every_s=every if every > 0 else float("inf"))
    return create_app(live)


def _log_booktower_info() -> None:
    """uvicorn configures only its own loggers: without a handler, booktower's INFO lines (a bundle reloaded) are
    dropped and its errors printed bare by logging's last resort. Left alone when logging is set up already."""
    logger = logging.getLogger("booktower")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s booktower worker %(process)d: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


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
