"""The HTTP plumbing of the platform's small `http.server` services: the feedback endpoint, the shadow mirror
(ml/delivery/) and the alert receivers (ml/serving/alert_receiver.py).

JSON in and out, a bounded body, quiet access logs, and a serve loop that ends cleanly on SIGINT or SIGTERM (the
kubelet's stop signal) and then closes what the service holds. What differs is their routes, which each
declares as a `JsonHandler` subclass.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20


class BodyError(ValueError):
    """A request body the service cannot read; `status` is the answer (400, 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON (or text) with a Content-Length, and reads bounded bodies."""

    # Headers and body are two writes: with Nagle's algorithm the body waits for the delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    logger = logging.getLogger("mlplat.http")

    def log_message(self, fmt: str, *args: Any) -> None:
        self.logger.debug(fmt, *args)

    def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply(self, status: int, doc: Any, content_type: str = "application/json") -> None:
        """`doc` as JSON, or a str sent as it is (with `content_type`)."""
        self.send(status, doc.encode() if isinstance(doc, str) else json.dumps(doc).encode(), content_type)

    def body(self, limit: int = MAX_BODY) -> bytes:
        """The request body, at most `limit` bytes; raises BodyError without a usable Content-Length."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= limit:
            raise BodyError(f"a body of 1..{limit} bytes with its Content-Length is required",
                            400 if length <= limit else 413)
        return self.rfile.read(length)

    def json_body(self, limit: int = MAX_BODY) -> Any:
        try:
            return json.loads(self.body(limit))
        except json.JSONDecodeError as exc:
            raise BodyError(f"the body is not JSON: {exc}") from None


def serve(server: ThreadingHTTPServer, log: logging.Logger, banner: str,
          cleanup: Callable[[], None] | None = None) -> int:
    """Serve until SIGINT or SIGTERM, then close the socket and run `cleanup` (close stores)."""
    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        # shutdown() waits for serve_forever to return: call it from another thread than the loop's.
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    log.info("%s", banner)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if cleanup is not None:
            cleanup()
    return 0
