"""The HTTP plumbing the feedback endpoint, the shadow mirror and the alert receivers share
(ml/serving/http_service.py): bounded JSON bodies refused with a named 4xx, and a serve loop that the kubelet's
SIGTERM ends cleanly, closing what the service holds. In process (a thread serves HTTP)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from ml.serving.http_service import JsonHandler, serve

pytestmark = pytest.mark.ml


class Echo(JsonHandler):
    def do_POST(self) -> None:
        try:
            self.reply(200, {"got": self.json_body(limit=64)})
        except ValueError as exc:
            self.reply(getattr(exc, "status", 400), {"error": str(exc)})


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bodies_are_bounded_and_must_be_json(url: str) -> None:
    assert _post(url, b'{"a": 1}') == (200, {"got": {"a": 1}})
    code, doc = _post(url, b"x" * 65)
    assert code == 413 and doc["error"] == "a body of 1..64 bytes with its Content-Length is required"
    code, doc = _post(url, b"{nope")
    assert code == 400 and doc["error"].startswith("the body is not JSON")
    code, doc = _post(url, b"")
    assert code == 400 and "Content-Length" in doc["error"]


def test_sigterm_stops_the_loop_and_closes_what_the_service_holds() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    closed: list[bool] = []
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert serve(server, logging.getLogger("test"), "echo", lambda: closed.append(True)) == 0
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert closed == [True] and server.socket.fileno() == -1  # the listening socket is closed
