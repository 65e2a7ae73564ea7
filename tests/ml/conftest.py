"""Fixtures that start real services on 127.0.0.1 (free ports) and always stop them.

- `mlflow_server` (session): `mlflow server` with a SQLite backend, ~20 s to start on 2 cores.
- `redis_server` (session) and `redis_factory` (fresh servers a test may stop mid-test).
- `mlserver_factory`: writes an MLServer repository and starts `mlserver start` on it.
- `infer`: POST a V2 inference request, return the httpx response.
- (autouse, session) the data registry `mlplat model train --data` records into: one per test session in a
  temporary directory, never the checkout's .local/.
- `spark_session` (session): one SparkSession on local[2] for every Spark test (the JVM's start-up costs
  seconds: docs/BENCHMARKS.md), stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

# Before anything imports feast: feast.metrics points prometheus_client at a multiprocess directory when
# it is imported first, and then metrics of separate registries in this process share their values.
import prometheus_client.values  # noqa: F401  (import order matters)
import pytest

from ml.serving.processes import MLflowServer, MLServerProcess, RedisServer, free_port
from ml.serving.settings import ModelEntry, write_repository


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for tests that drive the online-store readers' coroutines themselves."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session", autouse=True)
def _data_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("data") / "data-registry"
    before = os.environ.get("MLPLAT_DATA_REGISTRY")
    os.environ["MLPLAT_DATA_REGISTRY"] = str(root)
    yield root
    if before is None:
        os.environ.pop("MLPLAT_DATA_REGISTRY", None)
    else:
        os.environ["MLPLAT_DATA_REGISTRY"] = before


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    if shutil.which("java") is None:
        pytest.fail("java is not installed: run scripts/bootstrap.sh system (openjdk-17-jre-headless)")
    from ml.data.spark_features import local_session

    session = local_session()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowServer]:
    server = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start(timeout_s=180)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RedisServer]]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run scripts/bootstrap.sh system")
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        started.append(server)
        return server.start(timeout_s=20)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(redis_factory: Callable[[], RedisServer]) -> RedisServer:
    return redis_factory()


@pytest.fixture(scope="session")
def mlserver_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., MLServerProcess]]:
    started: list[MLServerProcess] = []

    def start(models: list[ModelEntry], env: dict[str, str] | None = None) -> MLServerProcess:
        http = free_port()
        repo = write_repository(
            tmp_path_factory.mktemp("mlserver"), models, http_port=http, grpc_port=free_port(),
            metrics_port=free_port(),
        )
        server = MLServerProcess(repo, http, extra_env=env)
        started.append(server)
        return server.start(timeout_s=180)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def infer() -> Callable[..., httpx.Response]:
    def post(base_url: str, model: str, inputs: list[dict[str, Any]], parameters: dict | None = None) -> httpx.Response:
        body: dict[str, Any] = {"inputs": inputs}
        if parameters:
            body["parameters"] = parameters
        return httpx.post(f"{base_url}/v2/models/{model}/infer", json=body, timeout=30)

    return post


@pytest.fixture(scope="session")
def check_metadata() -> Callable[[str, str, dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """`check_metadata(base_url, model, request_body, response_body)`: the model's V2 metadata declares every
    input the request sent (same datatype) and exactly the outputs the response carries (name, datatype)."""
    def check(base_url: str, model: str, request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        meta = httpx.get(f"{base_url}/v2/models/{model}", timeout=10).json()
        declared_in = {t["name"]: t for t in meta.get("inputs") or []}
        assert declared_in, f"{model}: metadata declares no inputs: {meta}"
        for tensor in request["inputs"]:
            assert tensor["name"] in declared_in, (tensor["name"], sorted(declared_in))
            assert declared_in[tensor["name"]]["datatype"] == tensor["datatype"], (tensor, declared_in)
        assert all(isinstance(t["shape"], list) and t["shape"] for t in meta["inputs"] + meta["outputs"]), meta
        declared_out = [(t["name"], t["datatype"]) for t in meta.get("outputs") or []]
        assert declared_out == [(o["name"], o["datatype"]) for o in response["outputs"]], (declared_out, response)
        return meta

    return check


def metrics_text(server: MLServerProcess) -> str:
    """The server's Prometheus exposition (metrics port from its settings.json)."""
    import json

    port = json.loads((Path(server.workdir) / "settings.json").read_text())["metrics_port"]
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


@pytest.fixture(scope="session")
def scrape() -> Callable[[MLServerProcess], str]:
    return metrics_text


class SharedServer:
    """One MLServer for the whole session; runtime tests add their models to it at run time
    through the V2 repository API instead of paying a server start per test module."""

    def __init__(self, process: MLServerProcess) -> None:
        self.process = process
        self.url = process.url
        self.repo = Path(process.workdir)

    def add(self, entry: ModelEntry) -> str:
        import json

        folder = self.repo / entry.name
        folder.mkdir(exist_ok=True)
        (folder / "model-settings.json").write_text(json.dumps(entry.settings()))
        resp = httpx.post(f"{self.url}/v2/repository/models/{entry.name}/load", timeout=120)
        assert resp.status_code == 200, f"loading {entry.name} failed: {resp.text}\n{self.process.tail()}"
        return entry.name


@pytest.fixture(scope="session")
def shared_mlserver(mlserver_factory: Callable[..., MLServerProcess]) -> SharedServer:
    return SharedServer(mlserver_factory([]))
