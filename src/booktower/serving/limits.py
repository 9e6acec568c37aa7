"""A request-body size limit enforced before the body is parsed (ASGI middleware)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodySizeLimit:
    """413 when Content-Length exceeds `max_bytes`, or when the streamed body does (chunked uploads lie)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await _reply(send, 400, "invalid Content-Length header")
                return
            if too_large:
                await _reply(send, 413, f"request body larger than {self.max_bytes} bytes")
                return
        # Read the body here, bounded, and replay it: the app never sees more than `max_bytes`.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], receive, message), send)  # a disconnect: let the app see it
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, f"request body larger than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, receive, None), send)


def _replay(chunks: list[bytes], upstream: Receive, first: Message | None) -> Receive:
    """A `receive` that yields `first` (or the buffered body) once, then whatever the server sends next."""
    pending: list[Message] = [first or {"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await upstream()

    return replayed


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
