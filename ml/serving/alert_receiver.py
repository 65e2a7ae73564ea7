"""The HTTP side of the platform's alert receivers (automatic rollback, retraining on drift).

Alerts arrive as Alertmanager webhooks (`POST /alerts`, the cluster) or straight from Prometheus
(`POST /api/v2/alerts`, the local platform, which runs no Alertmanager). A receiver answers at once
and acts on its own worker thread; this module parses the two formats, serves `GET /healthz` and
`GET /decisions`, reads the two run-time switches (an environment variable and a pause file) and runs
the queue and worker thread (`QueuedReceiver`); what an alert leads to is the receiver's own `handle`.
Standard library only: the receivers run in the model-server and ops images.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from ml.serving import http_service

log = logging.getLogger("mlplat.alerts")
OFF_VALUES = ("off", "0", "false", "disabled")


class AlertSink(Protocol):
    decisions: list[dict[str, Any]]

    def submit(self, alerts: list[dict[str, Any]]) -> int: ...

    def disabled(self) -> str | None: ...

    def close(self) -> None: ...


def firing(alert: dict[str, Any]) -> bool:
    """Alertmanager says `status`; Prometheus' own posts mark a resolved alert by an end in the past."""
    if alert.get("status"):
        return alert["status"] == "firing"
    ends = alert.get("endsAt")
    if not ends or ends.startswith("0001-"):
        return True
    try:
        return datetime.fromisoformat(ends.replace("Z", "+00:00")) > datetime.now(UTC)
    except ValueError:
        return True


def switched_off(env_var: str, state_dir: Path | None, pause_file: str) -> str | None:
    """Why the receiver must not act right now (`<env_var>=off` or `<state_dir>/<pause_file>`), else None."""
    if os.environ.get(env_var, "").lower() in OFF_VALUES:
        return f"{env_var}={os.environ[env_var]}"
    if state_dir is not None and (state_dir / pause_file).exists():
        return f"{state_dir / pause_file} exists"
    return None


class QueuedReceiver:
    """What both receivers share behind `submit`: a queue of accepted alerts handled in order by one
    worker thread (`handle`, written by the receiver), the `decisions` list `GET /decisions` shows,
    the off switch, and `close`, which lets the queue drain and stops the thread."""

    def __init__(self, name: str, disable_env: str, pause_file: str, state_dir: Path | None) -> None:
        self.disable_env, self.pause_file, self.state_dir = disable_env, pause_file, state_dir
        self.decisions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    def handle(self, item: dict[str, Any]) -> None:
        raise NotImplementedError

    def disabled(self) -> str | None:
        return switched_off(self.disable_env, self.state_dir, self.pause_file)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=30)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            self.handle(item)


def make_handler(sink: AlertSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), fmt % args)

        def _reply(self, code: int, doc: Any) -> None:
            body = json.dumps(doc, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path in ("/healthz", "/-/ready"):
                self._reply(200, {"ok": True, "disabled": sink.disabled()})
            elif self.path == "/decisions":
                self._reply(200, sink.decisions)
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                doc = json.loads(self.rfile.read(length) or b"null")
            except json.JSONDecodeError:
                self._reply(400, {"error": "body is not JSON"})
                return
            if self.path == "/alerts" and isinstance(doc, dict):  # Alertmanager webhook (version 4)
                alerts = doc.get("alerts") or []
            elif self.path in ("/api/v2/alerts", "/api/v1/alerts") and isinstance(doc, list):  # Prometheus
                alerts = doc
            else:
                self._reply(400, {"error": "POST /alerts (Alertmanager webhook) or /api/v2/alerts (alert list)"})
                return
            self._reply(200, {"accepted": sink.submit(alerts)})

    return Handler


def serve(sink: AlertSink, host: str, port: int, what: str) -> int:
    """Serve `sink` until interrupted or stopped (SIGTERM), then close the server and the sink's worker."""
    server = ThreadingHTTPServer((host, port), make_handler(sink))
    return http_service.serve(server, log, f"{what} receiver on {host}:{port}", sink.close)
