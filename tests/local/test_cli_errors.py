"""Every `mlplat` subcommand, as a user runs it, against a broken stack file and a dead platform: a clean
message naming what is wrong (the invalid key, the service that does not answer, the bad argument), a
non-zero exit, no traceback, no terminal escape codes in captured output, and an answer within 15 s.

Nothing shared is stopped: the commands point at stack files in a temporary directory
(`MLPLAT_STACKS_DIR`), a state directory no platform uses and ports nothing listens on, so the session's
platforms are never disturbed. No `local up` runs here.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from contracts import local_platform
from local.config import DEFAULT_PORTS, port_env_var
from mlplat.cli import COMMANDS

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]
WITHIN_S = 15.0


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    needle: str | None  # what the message must name (None: the command does not need what is broken)
    fails: bool = True
    service: bool = False  # a dead service: named within WITHIN_S


def _dead_ports(n: int) -> list[int]:
    """Ports nothing listens on (bound, then released; nothing here starts a server on them)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("cli-errors")
    stacks = root / "stacks"
    stacks.mkdir()
    for env in ("dev", "staging", "prod"):
        doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
        doc["config"]["mlplatform:network"]["natGateways"] = "two"  # not a value the schema allows
        (stacks / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump(doc))
    state = root / "state"
    state.mkdir()
    (root / "mirror").mkdir()
    (root / "data").mkdir()
    ports = dict(zip(DEFAULT_PORTS, _dead_ports(len(DEFAULT_PORTS)), strict=True))
    # A platform that was up here (its record and summary are left) and whose services are gone: commands
    # find it from its record, then name the service that does not answer.
    (state / "summary.json").write_text('{"smoke": {}}')
    _record(state, ports)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLAT_", "MLFLOW_"))}
    env.update({port_env_var(name): str(port) for name, port in ports.items()})
    env.update({"MLPLAT_STACKS_DIR": str(stacks), "MLPLAT_LOCAL_DIR": str(state),
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}", "TERM": "xterm-256color"})
    return {"root": root, "stacks": stacks, "state": state, "ports": ports, "env": env}


class _HealthOnly(http.server.BaseHTTPRequestHandler):
    """An MLflow that answers its health check and nothing else: the next service in line is the dead one."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def mlflow_up(broken: dict[str, object]) -> Iterator[dict[str, str]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthOnly)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(broken["env"])  # type: ignore[arg-type]
    port = server.server_address[1]
    env.update({port_env_var("mlflow"): str(port), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    ports = dict(broken["ports"])  # type: ignore[call-overload]
    _record(broken["state"], {**ports, "mlflow": port})  # type: ignore[arg-type]
    yield env
    _record(broken["state"], ports)  # type: ignore[arg-type]
    server.shutdown()


def _record(state: Path, ports: dict[str, int]) -> None:
    local_platform.write(local_platform.PlatformRecord(
        state_dir=state, host="127.0.0.1", ports=ports, models=("fraud", "sentiment", "recommendation"),
        services=("mlflow", "mlserver", "prometheus", "autorollback", "retrain"), phase="up"))


def _cases(b: dict[str, object]) -> dict[str, list[Case]]:
    root, stacks, ports = b["root"], b["stacks"], b["ports"]
    assert isinstance(root, Path) and isinstance(stacks, Path) and isinstance(ports, dict)
    bad_key = "natGateways"
    mlflow = "MLflow at"
    return {
        "validate-config": [Case(("validate-config", str(stacks / "Pulumi.prod.yaml")), bad_key)],
        "config-doc": [Case(("config-doc", "--check"), bad_key)],  # its per-tier table reads the stack files
        "synth": [Case(("synth", "--stack", "prod", "--out", str(root / "plan.json")), bad_key)],
        "render": [Case(("render", "--stack", "prod", "--out", str(root / "render")), bad_key)],
        "policy": [Case(("policy", "--stack", "prod"), bad_key)],
        "policy-doc": [Case(("policy-doc", "--check"), None, fails=False)],
        "diff": [Case(("diff", "--stack", "prod", "--base", "HEAD"), bad_key)],
        "charts": [Case(("charts", "pull", "--offline", "--mirror", str(root / "mirror")), "is not in the mirror",
                        fails=False)],
        "conform": [Case(("conform", "--stack", "prod"), bad_key)],
        "preflight": [Case(("preflight", "--stack", "prod"), bad_key)],
        "local": [Case(("local", "status"), "nothing is running", service=True),
                  Case(("local", "chaos", "--faults", "redis"), "the platform is not up", service=True)],
        "runbook": [Case(("runbook", "run", "model-rollback", "--param", "model=fraud"), mlflow, service=True)],
        "model": [Case(("model", "card", "fraud"), mlflow, service=True),
                  Case(("model", "approve", "fraud", "1", "--by", "a", "--reason", "b"), mlflow, service=True),
                  Case(("model", "approve", "fraud", "1", "--by", "a", "--reason", "b", "--stack-file",
                        str(stacks / "Pulumi.prod.yaml")), bad_key),
                  Case(("model", "drift", "fraud"), mlflow, service=True),
                  Case(("model", "promote", "fraud", "1", "--stack-file", str(stacks / "Pulumi.prod.yaml")), bad_key),
                  Case(("model", "promote", "fraud", "1", "--stack-file", str(REPO / "stacks" / "Pulumi.dev.yaml")),
                       mlflow, service=True),
                  Case(("model", "evaluate", "fraud", "--model", "models:/fraud@champion", "--data",
                        str(stacks / "Pulumi.dev.yaml")), mlflow, service=True),
                  Case(("model", "train", "fraud", "--data", str(root / "data")), mlflow, service=True)],
        "bench": [Case(("bench", "store", "--url", f"redis://127.0.0.1:{ports['redis']}"), "Redis at", service=True)],
        "capacity": [Case(("capacity", "--tps", "1000", "--p99-ms", "5", "--stack", "prod"), bad_key),
                     Case(("capacity", "--tps", "1000", "--p99-ms", "0.5"), "impossible target")],
        "loadtest": [Case(("loadtest", "--duration", "2s"), bad_key),  # the objective is the stack's
                     Case(("loadtest", "--p99-ms", "10", "--max-error-ratio", "0.01"), mlflow, service=True),
                     Case(("loadtest", "--p99-ms", "10", "--max-error-ratio", "0.01", "--model", "fraud", "--target",
                           f"http://127.0.0.1:{ports['http']}"), "the model server (MLServer) at", service=True)],
        "loadtest-job": [Case(("loadtest-job", "--stack", "prod", "--image", "img:1", "--requests",
                               str(root / "requests.json")), bad_key)],
        "pipeline": [Case(("pipeline", "run", "fraud", "--local", "--gates", "{bad"), "--gates: not valid JSON"),
                     Case(("pipeline", "run", "fraud", "--local", "--gates", '{"auk": 0.9}'),
                          "does not produce: auk"),
                     Case(("pipeline", "run", "fraud", "--local", "--data", "sample"), mlflow, service=True)],
        "rollout": [Case(("rollout", "status", "fraud"), mlflow, service=True),
                    Case(("rollout", "start", "fraud", "2", "--steps", "10,100"), mlflow, service=True)],
        "experiment": [Case(("experiment", "status", "fraud"), "no experiment for fraud"),
                       Case(("experiment", "ab", "fraud", "--challenger", "2", "--min-samples", "100"), mlflow,
                            service=True)],
        "data": [Case(("data", "versions"), "is not a data registry"),  # none made in the state dir yet
                 Case(("data", "add", str(root / "no-such-dir")), "does not exist")],
    }


def _run(case: Case, env: dict[str, str]) -> tuple[Case, subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mlplat", *case.argv], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    return case, done, time.monotonic() - started


def test_every_subcommand_has_a_case(broken):
    assert set(_cases(broken)) == {name for name, _module, _env in COMMANDS}


def test_broken_stack_and_dead_platform_give_clean_fast_errors(broken):
    cases = [c for group in _cases(broken).values() for c in group]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _run(c, broken["env"]), cases))
    _assert_clean(results)


def test_with_mlflow_up_the_next_dead_service_is_named(mlflow_up):
    """Each service in turn: MLflow answers, so the model server, Prometheus are the ones named."""
    cases = [
        Case(("pipeline", "run", "fraud", "--local", "--data", "sample"), "the model server (MLServer) at",
             service=True),
        Case(("runbook", "run", "model-rollback", "--param", "model=fraud"), "the model server (MLServer) at",
             service=True),
        Case(("runbook", "run", "model-drift"), "Prometheus at", service=True),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        _assert_clean(list(pool.map(lambda c: _run(c, mlflow_up), cases)))


def _assert_clean(results: list[tuple[Case, subprocess.CompletedProcess[str], float]]) -> None:
    problems = []
    for case, done, seconds in results:
        out = done.stdout + done.stderr
        where = f"mlplat {' '.join(case.argv)} (exit {done.returncode}, {seconds:.1f} s):\n{out[-2000:]}"
        if "Traceback" in out:
            problems.append(f"traceback: {where}")
        if "\x1b[" in out:
            problems.append(f"terminal escape codes in captured output: {where}")
        if case.fails and done.returncode == 0:
            problems.append(f"exit 0: {where}")
        if not case.fails and done.returncode not in (0, 1):
            problems.append(f"unexpected exit: {where}")
        if case.needle is not None and case.needle not in out:
            problems.append(f"does not name {case.needle!r}: {where}")
        if case.service and seconds > WITHIN_S:
            problems.append(f"took {seconds:.1f} s (> {WITHIN_S:.0f} s): {where}")
    assert not problems, "\n\n".join(problems)
