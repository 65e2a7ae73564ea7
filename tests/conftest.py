"""Shared by every suite (standard library only, so each environment can load it).

The fast lane (`make test-fast`, MLPLAT_TEST_FAST=1) promises unit tests only: no process is started.
Rather than trusting the markers, this makes the promise checkable: in the fast lane any
`subprocess.Popen` fails the test that asked for it, naming the command and the marker to add.
Under xdist only the workers are guarded; the controller needs Popen to start them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

FAST_LANE = "MLPLAT_TEST_FAST"


class ProcessInFastLane(RuntimeError):
    pass


def _guard(config: pytest.Config) -> bool:
    if not os.environ.get(FAST_LANE):
        return False
    is_controller = bool(config.getoption("numprocesses", None)) and not os.environ.get("PYTEST_XDIST_WORKER")
    return not is_controller


@pytest.fixture(scope="session", autouse=True)
def _no_process_in_the_fast_lane(pytestconfig: pytest.Config) -> Iterator[None]:
    # A session fixture, not pytest_configure: pytest and xdist run `uname` themselves at start-up.
    if not _guard(pytestconfig):
        yield
        return
    original = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        raise ProcessInFastLane(
            f"the fast lane ({FAST_LANE}=1) starts no process, but this test ran {args!r}: "
            "mark it `integration` (it starts real processes) or `conformance` (it renders the pinned charts)")

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def synth() -> Callable[[str], Any]:
    """Each stack synthesized under Pulumi's mocks once per session (worker), shared by the IaC and policy
    suites: `synth(stack)` is what `mlplat synth --stack STACK` writes, before the preview-shaped JSON."""
    # Imported here: the ML environment loads this file too and has no pulumi.
    from infra.offline.synth import synthesize

    cache: dict[str, Any] = {}

    def get(stack: str) -> Any:
        if stack not in cache:
            cache[stack] = synthesize(stack)
        return cache[stack]

    return get


# Expensive set-ups that several modules share, and the xdist group that owns each: under
# `--dist loadgroup` every test that needs one runs on the same worker, so it is made once per run.
SHARED_SETUPS = {
    "report": "conformance",  # each stack's full `mlplat conform` run (tests/infra/conftest.py)
    "demo_platform": "demo-platform",  # `make demo`'s `mlplat local up --redis` (tests/local/conftest.py)
    "autorollback_platform": "autorollback-platform",  # fraud, 1 s rules: rollback and delivery tests
    "mlflow_server": "ml-services",  # tests/ml/conftest.py: MLflow, Redis and MLServer processes
    "redis_factory": "ml-services",
    "mlserver_factory": "ml-services",
    "moto_endpoint": "moto",  # the moto server (below): the runbooks' AWS steps, the data registry's S3 remote
    "spark_session": "spark",  # tests/ml/conftest.py: one JVM + SparkSession on local[2]
}


# Fixtures that start real processes: a test that uses one is an integration test (not in the fast lane).
PROCESS_FIXTURES = {"mlflow_server", "redis_factory", "mlserver_factory", "moto_endpoint", "mlflow_url",
                    "demo_platform", "harness", "spark_session"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups and `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test the xdist group of the shared set-up it needs; a test that needs a module-scoped
    fixture (a platform or server made for one module) stays with the rest of its module. A test that
    needs a fixture starting processes is marked `integration`."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("xdist_group"):
            continue
        names = getattr(item, "fixturenames", ())
        group = next((SHARED_SETUPS[name] for name in names if name in SHARED_SETUPS), None)
        if group is None:
            info = getattr(item, "_fixtureinfo", None)
            defs = info.name2fixturedefs if info is not None else {}
            if any(d and d[-1].scope in ("module", "package") for d in defs.values()):
                group = item.module.__name__ if isinstance(item, pytest.Function) else item.nodeid
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's AWS API emulator on 127.0.0.1 (the ML environment has moto; the fixture imports it when used)."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube_fake() -> Any:
    """tests/kube_fake.py: the fake Kubernetes API (merge patches, the Seldon CRD schema, RBAC rules, Jobs). A
    module loaded by path, as test modules cannot import one another under --import-mode=importlib."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "mlplat_tests_kube_fake"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("kube_fake.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
