"""The demo platform of the local suite: `make demo`'s own command, started once per session.

`demo_platform` runs the command line of the Makefile's `demo` target (read from the Makefile, so the
test follows it if it changes: today `.venv/bin/mlplat local up --redis`) in a subprocess, exactly as
`make demo` does after its set-up, with one difference that leaves the command line untouched: its
state directory and ports come from the environment variables `local up` honours (MLPLAT_LOCAL_DIR,
MLPLAT_<NAME>_PORT), so it never touches a developer's own `.local/` platform or ports.

The demo end-to-end test, the inference fuzzing and the fault injection use it; each of them leaves
every service healthy (the fault run checks its own recovery). At the end of the session
`mlplat local down` stops it, and the teardown fails if a process, a process-group member or a port is
left behind.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.supervisor import Supervisor, group_members, pid_alive, port_in_use
from ml.serving.processes import free_port

REPO = Path(__file__).resolve().parents[2]
PORT_NAMES = ("mlflow", "http", "grpc", "metrics", "redis", "prometheus", "autorollback", "retrain")


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


@pytest.fixture(scope="session")
def demo_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    argv = demo_command()
    if not (REPO / argv[0]).is_file():
        pytest.fail(f"{argv[0]} is missing: run scripts/bootstrap.sh (make demo does it first)")
    state = tmp_path_factory.mktemp("demo-state")
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(PORT_NAMES):
        ports = {name: free_port() for name in PORT_NAMES}
    env = platform_env(state, ports)
    started = time.perf_counter()
    up = subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True, timeout=900, check=False)
    summary_file = state / "summary.json"
    # Later tests run `up` again on this state (reuse, chaos): they rewrite summary.json, so what the
    # first `up` reported (its pipeline runs above all) is kept here.
    info = {"argv": argv, "repo": REPO, "state": state, "ports": ports, "env": env, "up": up,
            "seconds": time.perf_counter() - started,
            "summary": json.loads(summary_file.read_text()) if summary_file.is_file() else None,
            "pids": {r.name: r.pid for r in Supervisor(state).records()},
            "http": f"http://127.0.0.1:{ports['http']}", "mlflow": f"http://127.0.0.1:{ports['mlflow']}"}
    try:
        yield info
    finally:
        pids = {r.name: r.pid for r in Supervisor(state).records()}
        down = mlplat(env, "local", "down", timeout=180)
        left = {name: group_members(pid) for name, pid in pids.items() if pid_alive(pid) or group_members(pid)}
        busy = [p for p in ports.values() if port_in_use(p)]
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, f"`mlplat local down` left processes behind: {left}"
        assert busy == [], f"ports still in use after `mlplat local down`: {busy}"
        assert Supervisor(state).records() == []


@pytest.fixture(scope="session")
def run_mlplat() -> Any:
    """`run_mlplat(env, *args, timeout=...)`: the `mlplat` command as a user runs it."""
    return mlplat


@pytest.fixture(scope="session")
def demo_up(demo_platform: dict[str, Any]) -> dict[str, Any]:
    """The demo platform, failing the test (not skipping it) when `up` did not succeed."""
    up = demo_platform["up"]
    assert up.returncode == 0, f"{' '.join(demo_platform['argv'])} failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
    return demo_platform
