"""The local platforms of this suite: one `mlplat local up` per distinct configuration, owned here.

`start_platform` is the one place that starts a platform (`local up` in a subprocess, as a user runs it)
and stops it (`local down`), failing the teardown if a process, a process-group member or a port is
left behind. Every platform gets its own state directory and free ports through the environment
variables `local up` honours (MLPLAT_LOCAL_DIR, MLPLAT_<NAME>_PORT), so none touches a developer's own
`.local/` platform or ports. The configurations:

- `demo_platform` (session): `make demo`'s own command line, read from the Makefile (today
  `.venv/bin/mlplat local up --redis`), shared by the demo end-to-end test, the inference fuzzing, the
  fault injection and the pipelines test of the demo's runs; each leaves every service healthy.
- `autorollback_platform` (session): fraud only, Prometheus evaluating every second, automatic rollback on;
  shared by the automatic-rollback test and the delivery test (rollouts and shadow through the splitter),
  which runs after it and leaves the first champion serving.
- `retrain_platform`: fraud only with Redis, Prometheus every second, automatic rollback off (a drift
  retrain must not be rolled back by a rule meant for bad versions).
- `manual_platform`: fraud only, no Prometheus (no rule may act while a person rolls back).
- `plugin_platform`: a model kept outside the repository (MLPLAT_MODEL_PLUGINS), no Prometheus.

The last three are used by one module each and live as long as that module, so no more than two
platforms run at a time on a small machine; a second module that needs one of them shares it by
making it session-scoped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import model_registry
from local.services import PORT_FLAGS
from local.supervisor import Supervisor, group_members, pid_alive, port_in_use, port_listening
from ml.serving.processes import free_port

REPO = Path(__file__).resolve().parents[2]
PORT_NAMES = tuple(PORT_FLAGS)


def demo_command() -> list[str]:
    """The command line of the Makefile's `demo` recipe (comments dropped)."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("demo:"))
    recipe = [line.strip() for line in lines[start + 1:] if line.startswith("\t")][:1]
    assert recipe, "the Makefile's demo target has no recipe"
    argv = shlex.split(recipe[0], comments=True)
    assert argv[:3] == [".venv/bin/mlplat", "local", "up"], f"unexpected demo command {argv}"
    return argv


def platform_env(state: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_TRACKING", "MLPLAT_"))}
    env["MLPLAT_LOCAL_DIR"] = str(state)
    env.update({f"MLPLAT_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    return env


def mlplat(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/mlplat ARGS` (the IaC environment's dispatcher, as a user and `make demo` call it)."""
    return subprocess.run([str(REPO / ".venv" / "bin" / "mlplat"), *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def service_port(taken: set[int]) -> int:
    """A free port below the kernel's ephemeral range: a port from that range could be handed to some
    client connection as its source port between choosing it and the service binding it (or after `down`)."""
    high = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, high - 12000), high)
        if port not in taken and not port_in_use(port):
            return port
    return free_port()  # a crowded range: fall back to the kernel's choice


def free_ports() -> dict[str, int]:
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in PORT_NAMES:
        ports[name] = service_port(taken)
        taken.add(ports[name])
    return ports


@contextlib.contextmanager
def start_platform(state: Path, argv: list[str], *, extra_env: dict[str, str] | None = None,
                   timeout: float = 900) -> Iterator[dict[str, Any]]:
    """Run `argv` (a `local up` command line) with its own state and ports; yield what the tests need; at
    the end `local down`, which must stop every process and free every port."""
    ports = free_ports()
    env = {**platform_env(state, ports), **(extra_env or {})}
    started = time.perf_counter()
    up = subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True, timeout=timeout, check=False)
    summary_file = state / "summary.json"
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    # Later tests may run `up` again on this state (reuse, chaos): they rewrite summary.json, so what the
    # first `up` reported (its pipeline runs above all) is kept here.
    info = {"argv": argv, "repo": REPO, "state": state, "ports": ports, "env": env, "up": up,
            "seconds": time.perf_counter() - started,
            "summary": json.loads(summary_file.read_text()) if summary_file.is_file() else None,
            "pids": {r.name: r.pid for r in Supervisor(state).records()},
            "http": url["http"], "serving": url["http"], "mlflow": url["mlflow"], "prometheus": url["prometheus"],
            "receiver": url["autorollback"], "retrain": url["retrain"], "metrics": url["metrics"]}
    try:
        yield info
    finally:
        pids = {r.name: r.pid for r in Supervisor(state).records()}
        down = mlplat(env, "local", "down", timeout=180)
        left = {name: group_members(pid) for name, pid in pids.items() if pid_alive(pid) or group_members(pid)}
        busy = [p for p in ports.values() if port_listening(p)]
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, f"`mlplat local down` left processes behind: {left}"
        assert busy == [], f"ports still in use after `mlplat local down`: {busy}"
        assert Supervisor(state).records() == []


def local_up(*args: str) -> list[str]:
    """`mlplat local up ARGS` through the IaC environment's dispatcher, as a user calls it."""
    return [str(REPO / ".venv" / "bin" / "mlplat"), "local", "up", *args]


def up_ok(platform: dict[str, Any]) -> dict[str, Any]:
    """The platform, failing the test (not skipping it) when its `up` did not succeed."""
    up = platform["up"]
    assert up.returncode == 0, f"{' '.join(platform['argv'])} failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
    return platform


@pytest.fixture(scope="session")
def demo_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    argv = demo_command()
    if not (REPO / argv[0]).is_file():
        pytest.fail(f"{argv[0]} is missing: run scripts/bootstrap.sh (make demo does it first)")
    with start_platform(tmp_path_factory.mktemp("demo-state"), argv) as platform:
        yield platform


# Prometheus evaluates the rules every second (instead of the production interval), so an alert fires
# within the tests' time budget.
FAST_RULES = {"MLPLAT_PROMETHEUS_INTERVAL_S": "1"}


@pytest.fixture(scope="session")
def autorollback_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with start_platform(tmp_path_factory.mktemp("autorollback-state"), local_up("--models", "fraud"),
                        extra_env=FAST_RULES) as platform:
        yield platform


@pytest.fixture(scope="module")
def experiments_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # The A/B and bandit tests move traffic and champions: a platform of their own, as the automatic-rollback
    # one (fraud, Prometheus every second), so no other module's rollouts or rollbacks change what they see.
    with start_platform(tmp_path_factory.mktemp("experiments-state"), local_up("--models", "fraud"),
                        extra_env=FAST_RULES) as platform:
        yield platform


@pytest.fixture(scope="module")
def retrain_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    model = model_registry.names()[0]  # a model with stored features (read through Feast) and a drift reference
    argv = local_up("--models", model, "--redis", "--no-auto-rollback")
    # The drift test sends 300 requests right after `up`: below the default minimum sample size and inside
    # the default cool-down, which exist so that such traffic does not retrain by accident.
    fast_retrain = {**FAST_RULES, "MLPLAT_DRIFT_MIN_SAMPLES": "100", "MLPLAT_RETRAIN_COOLDOWN_S": "0"}
    with start_platform(tmp_path_factory.mktemp("pipelines-state"), argv, extra_env=fast_retrain) as platform:
        yield platform


@pytest.fixture(scope="module")
def manual_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    argv = local_up("--models", "fraud", "--no-prometheus")
    with start_platform(tmp_path_factory.mktemp("rollback-state"), argv) as platform:
        yield platform


@pytest.fixture(scope="session")
def platform_starter() -> Any:
    """`start_platform(state, argv, extra_env=...)`, for a module whose configuration needs its own set-up."""
    return start_platform


@pytest.fixture(scope="session")
def run_mlplat() -> Any:
    """`run_mlplat(env, *args, timeout=...)`: the `mlplat` command as a user runs it."""
    return mlplat


def agreement(env: dict[str, str]) -> dict[str, Any]:
    """`mlplat local status --json` of the platform in `env`: services, and per model the registry alias, the
    champion slot and the version the model server reports (local/consistency.py)."""
    out = mlplat(env, "local", "status", "--json", timeout=120)
    doc = json.loads(out.stdout)
    doc["returncode"] = out.returncode
    return doc


def assert_consistent(env: dict[str, str], **want: str) -> dict[str, Any]:
    """The consistency check passes (exit 0, every model agrees); `want`: model -> the version it must serve."""
    doc = agreement(env)
    models = {m["model"]: m for m in doc["models"]}
    assert doc["returncode"] == 0 and doc["ok"] is True, json.dumps(doc["problems"], indent=1)
    assert models and all(m["ok"] for m in models.values()), models
    for model, version in want.items():
        assert models[model]["alias_version"] == models[model]["served_version"] == version, models[model]
    return doc


def discovery_env(env: dict[str, str]) -> dict[str, str]:
    """`env` without the MLPLAT_<NAME>_PORT variables: a command must find the platform's ports itself (from
    what `local up` recorded in its state directory, MLPLAT_LOCAL_DIR)."""
    return {k: v for k, v in env.items() if not (k.startswith("MLPLAT_") and k.endswith("_PORT"))}


@pytest.fixture(scope="session")
def platform_env_for() -> Any:
    """`platform_env_for(state)`: the environment of a platform in `state` on free ports (for a test that starts
    a `local up` it interrupts within seconds)."""
    return lambda state: platform_env(state, free_ports())


@pytest.fixture(scope="session")
def platform_env_without_ports() -> Any:
    return discovery_env


@pytest.fixture(scope="session")
def consistent() -> Any:
    """`consistent(env, fraud="2")`: the consistency check of `mlplat local status` passes."""
    return assert_consistent


@pytest.fixture(scope="session")
def demo_up(demo_platform: dict[str, Any]) -> dict[str, Any]:
    """The demo platform, failing the test (not skipping it) when `up` did not succeed."""
    return up_ok(demo_platform)
