"""A request size limit in front of MLServer's REST API, enforced before any parsing.

MLServer 1.7 reads and parses a request body of any size (FastAPI + pydantic build the whole request
in memory before a runtime sees it), so one oversized request costs every other client its latency.
`BodyLimit` is an ASGI middleware that answers 413 with a JSON error naming the limit as soon as the
declared `Content-Length`, or the bytes received so far for a chunked body, exceed it.

    python -m ml.serving.request_limit start <repository>     (= `mlserver start`, with the limit)

is how the platform starts MLServer (the local platform, the tests, the model-server image). The limit
is `MLPLAT_MAX_REQUEST_BYTES` (default 8 MiB: the largest valid request of the reference models, a full
batch of 256 texts of 20,000 characters, fits with room to spare).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BYTES_ENV = "MLPLAT_MAX_REQUEST_BYTES"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def max_request_bytes(environ: MutableMapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get(MAX_BYTES_ENV, "")
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_BYTES_ENV}={raw!r} is not a whole number of bytes") from None
    if value < 1024:
        raise ValueError(f"{MAX_BYTES_ENV}={raw!r}: a limit below 1024 bytes would refuse ordinary requests")
    return value


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, before the application reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Send, size: str) -> None:
        body = json.dumps({"error": f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes "
                                    f"({MAX_BYTES_ENV}); send fewer rows per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, declared.decode())
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, f"more than {self.max_bytes}")


def install(max_bytes: int | None = None) -> None:
    """Make MLServer's REST app (built by `mlserver.rest.server.create_app`) carry the limit."""
    import mlserver.rest.server as rest_server

    limit = max_request_bytes() if max_bytes is None else max_bytes
    create = rest_server.create_app
    if getattr(create, "mlplat_limited", False):
        return

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = create(*args, **kwargs)
        app.add_middleware(BodyLimit, max_bytes=limit)
        return app

    create_app.mlplat_limited = True  # type: ignore[attr-defined]
    rest_server.create_app = create_app


def main() -> None:
    from mlserver.cli.main import main as mlserver_main

    install()
    mlserver_main()


if __name__ == "__main__":
    main()
