"""Start and stop the real local services the models need: redis-server, MLflow server, MLServer.

Each launcher binds 127.0.0.1 on a free port, waits until the service answers, and terminates its
own process group on `stop()` (also usable as a context manager). Used by tests/ml/conftest.py,
`mlplat bench models` and the local platform.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A child process in its own session, with its output in `log_path`."""

    name = "service"

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout_s: float = 120.0) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                env=self.env(), start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s; log:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: children (workers) go too
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class RedisServer(Service):
    name = "redis"

    def __init__(self, workdir: str | Path, port: int | None = None, persist: bool = False) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # persist: an append-only file in workdir (fsync every second), so a restarted server comes back
        # with the materialized features, as a replica keeps them for ElastiCache. Tests start empty.
        self.persist = persist

    def command(self) -> list[str]:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (scripts/bootstrap.sh system)")
        return [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "yes" if self.persist else "no", "--appendfsync", "everysec",
                "--dir", str(self.workdir)]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class MLflowServer(Service):
    """`mlflow server` with a SQLite backend and proxied local artifacts."""

    name = "mlflow"

    def __init__(self, workdir: str | Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination", str(self.workdir / "artifacts"), "--workers", "1",
        ]

    def env(self) -> dict[str, str]:
        # The job-execution backend (huey) is not needed and doubles start-up time on 2 cores.
        return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def ready(self) -> bool:
        return http_ok(f"{self.url}/health")


PROMETHEUS_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", "prometheus_multiproc_dir")


class MLServerProcess(Service):
    """`mlserver start <repository>` with the request size limit (ml/serving/request_limit.py); ports come from
    the repository's settings.json."""

    name = "mlserver"

    def __init__(self, repository: str | Path, http_port: int, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(repository)
        self.http_port = http_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.extra_env = extra_env or {}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ml.serving.request_limit", "start", str(self.workdir)]

    def env(self) -> dict[str, str]:
        # Importing feast points prometheus_client at a temporary directory (PROMETHEUS_MULTIPROC_DIR) that
        # the importing process deletes when it exits. A launcher that imported feast would hand that
        # soon-dead directory to MLServer, whose metrics then fail on every new label set. MLServer with
        # in-process workers keeps metric values in memory: give it a clean environment.
        inherited = {k: v for k, v in os.environ.items() if k not in PROMETHEUS_DIR_VARIABLES}
        return {**inherited, **self.extra_env}

    def ready(self) -> bool:
        return http_ok(f"{self.url}/v2/health/ready")
