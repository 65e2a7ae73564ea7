"""First checks of the local services (ml/service_checks.py): a dead or hung service is named, with its fix,
within the check's timeout; MLflow's client gets bounded retries unless the user set their own."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from contracts.errors import ServiceDown, UserError
from ml.service_checks import (
    LOCAL_FIX,
    MLFLOW_CLIENT_BOUNDS,
    bound_mlflow_client,
    check_mlflow,
    check_model_server,
    check_redis,
)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_service_is_named_with_its_fix_at_once():
    port = _dead_port()
    started = time.monotonic()
    with pytest.raises(ServiceDown) as info:
        check_mlflow(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 2
    assert str(info.value) == (f"MLflow at http://127.0.0.1:{port}/health is not answering (connection refused); "
                               f"{LOCAL_FIX}")
    assert isinstance(info.value, UserError)  # `mlplat` prints it as one line, exit 2
    with pytest.raises(ServiceDown, match=r"^Redis at 127.0.0.1:\d+ is not answering \(connection refused\); x$"):
        check_redis(f"redis://127.0.0.1:{port}/0", fix="x")


def test_a_hung_service_is_named_after_the_timeout():
    """Accepts connections, never answers: the check gives up after its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        started = time.monotonic()
        with pytest.raises(ServiceDown, match=r"the model server \(MLServer\) at .*/v2/health/live is not "
                                              r"answering \(no answer\)"):
            check_model_server(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.5)
        assert time.monotonic() - started < 3
    finally:
        listener.close()


def test_an_http_error_is_a_dead_service_too():
    class Unhealthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ServiceDown, match=r"\(HTTP 503\)"):
            check_mlflow(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    check_mlflow("sqlite:///tmp/mlflow.db")  # a database URI needs no server: nothing to check


def test_mlflow_client_retries_are_bounded_unless_set():
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7"}
    bound_mlflow_client(env)
    assert env == {**MLFLOW_CLIENT_BOUNDS, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7"}
