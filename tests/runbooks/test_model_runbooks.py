"""Model runbooks against a real MLflow server (SQLite backend, 127.0.0.1); the Seldon Experiment
through the injectable InMemoryKubeOps (no Kubernetes API server here)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient

from mlplat.runbook.books.models import CANARY_PROMOTION, ROLLBACK
from mlplat.runbook.context import RunContext
from mlplat.runbook.engine import AuditLog, run
from mlplat.runbook.kube import InMemoryKubeOps
from workloads.models.serving.processes import MLflowServer

EXPERIMENT = ("seldon", "fraud-experiment")


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start(timeout_s=180)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def registry(mlflow_url: str, request: pytest.FixtureRequest) -> tuple[MlflowClient, str]:
    """A registered model with three versions; champion = 3, challenger = 3."""
    client = MlflowClient(tracking_uri=mlflow_url)
    name = f"fraud-{request.node.name.replace('[', '-').replace(']', '')}"[:60]
    client.create_registered_model(name)
    for i in range(3):
        client.create_model_version(name, source=f"s3://mlplatform-models/fraud/{i + 1}")
    client.set_registered_model_alias(name, "champion", "3")
    client.set_registered_model_alias(name, "challenger", "3")
    return client, name


def _kube(name: str) -> InMemoryKubeOps:
    return InMemoryKubeOps(experiments={("seldon", f"{name}-experiment"): {f"{name}-champion": 90,
                                                                           f"{name}-challenger": 10}})


def test_rollback_dry_run_changes_nothing(registry, mlflow_url, tmp_path):
    client, name = registry
    out = io.StringIO()
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name), params={"model": name})
    report = run(ROLLBACK, ctx, execute=False, audit=AuditLog(tmp_path / "audit"), out=out)
    assert report.ok, out.getvalue()
    assert f"mlflow: set alias {name}@champion v3 -> v2" in out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "3"


def test_rollback_moves_champion_and_traffic(registry, mlflow_url, tmp_path):
    client, name = registry
    kube = _kube(name)
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params={"model": name})
    out = io.StringIO()
    report = run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "audit"), out=out)
    assert report.ok, out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert kube.experiments[("seldon", f"{name}-experiment")] == {f"{name}-champion": 100, f"{name}-challenger": 0}
    assert len((tmp_path / "audit").read_text().splitlines()) == 2


def test_rollback_to_explicit_version_and_refusals(registry, mlflow_url, tmp_path):
    client, name = registry
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name), params={"model": name, "to_version": "9"})
    out = io.StringIO()
    assert not run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert "has no version 9" in out.getvalue()
    client.set_registered_model_alias(name, "champion", "1")
    out = io.StringIO()
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name), params={"model": name})
    assert not run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert "the oldest version: nothing to roll back to" in out.getvalue()


def test_canary_promotion_shifts_weights_then_promotes(registry, mlflow_url, tmp_path):
    client, name = registry
    client.set_registered_model_alias(name, "champion", "2")
    kube = _kube(name)
    ctx = RunContext(env="staging", tracking_uri=mlflow_url, kube=kube,
                     params={"model": name, "challenger_weight": "25"})
    out = io.StringIO()
    report = run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out)
    assert report.ok, out.getvalue()
    assert kube.experiments[("seldon", f"{name}-experiment")] == {f"{name}-champion": 75, f"{name}-challenger": 25}
    assert client.get_model_version_by_alias(name, "champion").version == "3"
