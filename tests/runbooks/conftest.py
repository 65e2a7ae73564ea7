"""Real services on 127.0.0.1 for the runbook steps: MLflow servers (the moto server is tests/conftest.py's)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (in this process and in `mlplat` subprocesses) at the moto server."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    for key, value in {
        "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1", "MLPLAT_ACTOR": "test-operator",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server (SQLite backend) per test module, so registries never leak between modules."""
    from ml.serving.processes import MLflowServer

    server = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start(timeout_s=180)
    try:
        yield server.url
    finally:
        server.stop()
