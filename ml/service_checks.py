"""Bounded first checks of the services the commands call: MLflow, the model server (MLServer), Redis,
Prometheus and the alert receivers.

A command checks a service once, with a short timeout, before its first real call, so a dead service is
named within seconds together with the command that brings it back, instead of surfacing minutes later
from a client's retry loop as an error about something else. Standard library only: the checks run
before any heavy client is imported.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import MutableMapping

from contracts.errors import ServiceDown

CHECK_TIMEOUT_S = 3.0
LOCAL_FIX = "start the platform with `mlplat local up` (or check it with `mlplat local status`)"

# MLflow's HTTP client retries a refused connection 7 times with a backoff factor of 2 and waits up to
# 120 s per request by default (mlflow/environment_variables.py at v3.x), i.e. minutes before an error.
# The commands talk to a tracking server next to them: a few short retries are enough, and a user who
# needs the long ones sets the variables (setdefault keeps their values).
MLFLOW_CLIENT_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def bound_mlflow_client(environ: MutableMapping[str, str] | None = None) -> None:
    """Give MLflow's client bounded retries and timeouts (in this process and the children it starts)."""
    env = os.environ if environ is None else environ
    for key, value in MLFLOW_CLIENT_BOUNDS.items():
        env.setdefault(key, value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    inner = getattr(exc, "reason", None)
    if isinstance(inner, BaseException):
        exc = inner
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer"
    return str(exc) or type(exc).__name__


def check_http(service: str, url: str, *, fix: str = LOCAL_FIX, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """GET `url` once; anything but a 2xx answer within `timeout_s` raises ServiceDown naming `service`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            if 200 <= resp.status < 300:
                return
            reason = f"HTTP {resp.status}"
    except (OSError, ValueError) as exc:
        reason = _reason(exc)
    raise ServiceDown(service, url, reason, fix)


def check_mlflow(tracking_uri: str, *, fix: str = LOCAL_FIX, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """An MLflow tracking server answers `/health` (file and database URIs need no server: no check)."""
    if tracking_uri.startswith(("http://", "https://")):
        check_http("MLflow", f"{tracking_uri.rstrip('/')}/health", fix=fix, timeout_s=timeout_s)


def check_model_server(base_url: str, *, fix: str = LOCAL_FIX, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """The V2 server is live (`/v2/health/live`)."""
    check_http("the model server (MLServer)", f"{base_url.rstrip('/')}/v2/health/live", fix=fix,
               timeout_s=timeout_s)


def check_prometheus(base_url: str, *, fix: str = LOCAL_FIX, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    check_http("Prometheus", f"{base_url.rstrip('/')}/-/ready", fix=fix, timeout_s=timeout_s)


def check_tcp(service: str, host: str, port: int, *, fix: str = LOCAL_FIX,
              timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Something accepts connections on host:port (Redis, an alert receiver)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise ServiceDown(service, f"{host}:{port}", _reason(exc), fix) from None


def check_redis(url: str, *, fix: str = LOCAL_FIX, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """A Redis URL (redis:// or rediss://) accepts connections."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname is None:
        raise ValueError(f"not a Redis URL: {url!r}")
    check_tcp("Redis", parsed.hostname, parsed.port or 6379, fix=fix, timeout_s=timeout_s)
