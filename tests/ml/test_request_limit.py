"""The request size limit in front of MLServer (ml/serving/request_limit.py), as an ASGI middleware on its own:
a declared or streamed body over the limit gets 413 and the application never reads it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ml.serving.request_limit import DEFAULT_MAX_BYTES, MAX_BYTES_ENV, BodyLimit, max_request_bytes


def _call(chunks: list[bytes], headers: list[tuple[bytes, bytes]], limit: int = 1024) -> tuple[list[dict], list]:
    seen: list[bytes] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return queue.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": headers}
    asyncio.run(BodyLimit(app, max_bytes=limit)(scope, receive, send))
    return sent, seen


def _status_and_error(sent: list[dict]) -> tuple[int, str]:
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)["error"] if sent[0]["status"] == 413 else body.decode()


def test_a_declared_length_over_the_limit_is_refused_unread():
    sent, seen = _call([b"x" * 10], [(b"content-length", b"5000")])
    assert _status_and_error(sent) == (413, "request body of 5000 bytes exceeds the limit of 1024 bytes "
                                            f"({MAX_BYTES_ENV}); send fewer rows per request")
    assert seen == []  # the application never ran


def test_a_streamed_body_is_cut_off_at_the_limit():
    sent, seen = _call([b"x" * 600, b"x" * 600, b"x" * 600], [(b"transfer-encoding", b"chunked")])
    status, error = _status_and_error(sent)
    assert status == 413 and "more than 1024 bytes" in error
    assert len(seen) == 1  # read up to the chunk that crossed the limit, no further


def test_a_body_within_the_limit_reaches_the_application():
    sent, seen = _call([b"x" * 500, b"x" * 500], [(b"content-length", b"1000")])
    assert _status_and_error(sent) == (200, "ok") and b"".join(seen) == b"x" * 1000


def test_the_limit_comes_from_the_environment_with_a_clear_error():
    assert max_request_bytes({}) == DEFAULT_MAX_BYTES
    assert max_request_bytes({MAX_BYTES_ENV: "2048"}) == 2048
    with pytest.raises(ValueError, match="not a whole number"):
        max_request_bytes({MAX_BYTES_ENV: "8MB"})
