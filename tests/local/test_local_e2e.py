"""End to end: `mlplat local up` on generated sample data, predictions over HTTP, registry aliases,
a second `up` that reuses everything, then `mlplat local down` leaving no process and no busy port.

Runs the real CLI in a subprocess (as a user would) with its own state directory and free ports,
so it never touches a developer's running `.local/` platform.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from contracts import model_registry
from local.supervisor import Supervisor, group_members, pid_alive, port_in_use
from ml.serving.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]
# A subset for debugging one model (comma-separated); the default is all three reference models.
MODELS = tuple(os.environ.get("MLPLAT_LOCAL_TEST_MODELS", ",".join(model_registry.names())).split(","))
FLAGS = {"mlflow": "--mlflow-port", "http": "--http-port", "grpc": "--grpc-port", "metrics": "--metrics-port",
         "redis": "--redis-port", "prometheus": "--prometheus-port"}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_TRACKING"))}
    return subprocess.run([sys.executable, "-m", "mlplat", "local", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    state = tmp_path_factory.mktemp("local-state")
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(FLAGS):
        ports = {name: free_port() for name in FLAGS}
    common = ["--state-dir", str(state), *[a for n, p in ports.items() for a in (FLAGS[n], str(p))]]
    started = time.perf_counter()
    up = _cli("up", "--models", ",".join(MODELS), *common)
    info = {"state": state, "ports": ports, "common": common, "up": up, "seconds": time.perf_counter() - started,
            "pids": {r.name: r.pid for r in Supervisor(state).records()}}
    yield info
    _cli("down", *common, timeout=120)  # cleanup even when a test failed


def test_up_succeeds_and_serves_every_model(platform):
    up = platform["up"]
    assert up.returncode == 0, f"local up failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
    assert "mlplat local platform is up" in up.stdout and "Total time:" in up.stdout
    assert {"mlflow", "mlserver"} <= set(platform["pids"])
    summary = json.loads((platform["state"] / "summary.json").read_text())
    assert summary["ok"] is True
    for name in MODELS:
        assert summary["smoke"][name]["ok"], summary["smoke"][name]
    print(f"\nlocal up took {platform['seconds']:.1f}s")


def test_one_prediction_per_model_over_http(platform):
    summary = json.loads((platform["state"] / "summary.json").read_text())
    base = f"http://127.0.0.1:{platform['ports']['http']}"
    for name in MODELS:
        status, doc = _post(f"{base}/v2/models/{name}/infer", summary["smoke"][name]["request"])
        assert status == 200 and doc["model_name"] == name
        assert doc["outputs"] and all(o["data"] for o in doc["outputs"])
    with urllib.request.urlopen(f"http://127.0.0.1:{platform['ports']['metrics']}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "mlplat_model_prediction" in metrics  # the runtimes' own metrics are exported


def test_champion_aliases_in_mlflow(platform):
    from mlflow import MlflowClient

    url = f"http://127.0.0.1:{platform['ports']['mlflow']}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    summary = json.loads((platform["state"] / "summary.json").read_text())
    for name in MODELS:
        model = client.get_registered_model(name)
        assert "champion" in model.aliases, f"{name} has no champion: {summary['models']}"
        served = next(m for m in summary["models"] if m["name"] == name)
        assert served["alias"] == "champion" and model.aliases["champion"] == served["version"]
        assert client.get_model_version(name, served["version"]).tags["gate.passed"] == "true"


def test_status_reports_healthy_services(platform):
    out = _cli("status", "--json", *platform["common"], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert {s["name"] for s in doc["services"]} == set(platform["pids"])
    assert all(s["healthy"] for s in doc["services"])


def test_second_up_reuses_what_is_healthy(platform):
    again = _cli("up", "--models", ",".join(MODELS), *platform["common"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads((platform["state"] / "summary.json").read_text())
    assert set(summary["services"].values()) == {"reused"}
    assert not any(m["trained"] for m in summary["models"])
    assert {r.name: r.pid for r in Supervisor(platform["state"]).records()} == platform["pids"]


def test_down_leaves_no_process_and_frees_the_ports(platform):
    pids = {r.name: r.pid for r in Supervisor(platform["state"]).records()}
    assert pids
    down = _cli("down", *platform["common"], timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    for name, pid in pids.items():
        assert not pid_alive(pid), f"{name} (pid {pid}) still runs"
        assert group_members(pid) == [], f"{name} left processes behind: {group_members(pid)}"
    busy = [p for p in platform["ports"].values() if port_in_use(p)]
    assert busy == []
    assert Supervisor(platform["state"]).records() == []
