"""scripts/e2e_smoke.py (the e2e workflow's smoke test) against stand-ins: `kubectl` and `helm` scripts on
PATH that answer as the real ones do, HTTP servers on 127.0.0.1 for the Seldon mesh and the KFP API, and a
stand-in for the ML environment's training step. The real cluster run is the workflow's (no AWS here)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration  # runs the smoke script against kubectl/helm stand-ins in subprocesses

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("e2e_smoke", ROOT / "scripts" / "e2e_smoke.py")
assert _spec is not None and _spec.loader is not None
smoke = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke)

PLAN = {"steps": [{"newState": {"type": smoke.RELEASE_TYPE, "inputs": {"name": n}}} for n in ("mlflow", "jaeger")]
        + [{"newState": {"type": "aws:eks/cluster:Cluster", "inputs": {"name": "c"}}}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


class Mesh(BaseHTTPRequestHandler):
    answers: dict[str, Any] = {}
    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Mesh.seen.append((self.path, self.headers.get("Seldon-Model")))
        body = json.dumps(Mesh.answers.get(self.path, {"outputs": [{"name": "y", "data": [1]}]})).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"nodes": [("ip-1", "True"), ("ip-2", "True")],
                             "releases": {"mlflow": "deployed", "jaeger": "deployed"}, "train_exit": 0}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state_file = tmp_path / "state.json"

    def write_state() -> None:
        state_file.write_text(json.dumps({
            "nodes": {"items": [{"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": s}]}}
                                for n, s in state["nodes"]]},
            "helm": [{"name": n, "status": s} for n, s in state["releases"].items()]}))

    _executable(bin_dir / "kubectl", f"""#!/bin/sh
case "$1" in
  get) python3 -c "import json; print(json.dumps(json.load(open('{state_file}'))['nodes']))" ;;
  port-forward) exec sleep 60 ;;
esac
""")
    _executable(bin_dir / "helm", f"""#!/bin/sh
python3 -c "import json; print(json.dumps(json.load(open('{state_file}'))['helm']))"
""")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    servers = [ThreadingHTTPServer(("127.0.0.1", _free_port()), Mesh) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    Mesh.answers, Mesh.seen = {}, []
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    (tmp_path / "requests.json").write_text(json.dumps({"fraud": {"inputs": []}, "sentiment": {"inputs": []}}))

    def run() -> int:
        write_state()
        _executable(tmp_path / "ml-python", f"#!/bin/sh\necho 'training pipeline: done'\nexit {state['train_exit']}\n")
        return smoke.main(["--plan", str(tmp_path / "plan.json"), "--requests", str(tmp_path / "requests.json"),
                           "--ml-python", str(tmp_path / "ml-python"), "--wait-minutes", "0",
                           "--mesh-port", str(servers[0].server_address[1]),
                           "--kfp-port", str(servers[1].server_address[1])])

    state["run"] = run
    yield state
    for server in servers:
        server.shutdown()


def test_a_healthy_cluster_passes_every_check(cluster, capsys):
    assert cluster["run"]() == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["ok   nodes Ready", "ok   every release deployed", "ok   inference fraud",
                   "ok   inference sentiment", "ok   training pipeline fraud"]
    assert Mesh.seen == [("/v2/models/fraud-champion/infer", "fraud-champion"),
                         ("/v2/models/sentiment-champion/infer", "sentiment-champion")]


def test_each_kind_of_failure_is_reported_and_the_rest_still_runs(cluster, capsys):
    cluster["nodes"][1] = ("ip-2", "False")
    cluster["releases"]["jaeger"] = "failed"
    Mesh.answers = {"/v2/models/sentiment-champion/infer": {"error": "model not ready"}}
    cluster["train_exit"] = 1
    assert cluster["run"]() == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["FAIL nodes Ready: nodes not Ready: ip-2",
                   "FAIL every release deployed: releases not deployed: {'jaeger': 'failed'}",
                   "ok   inference fraud",
                   "FAIL inference sentiment: sentiment: no outputs in the response",
                   "FAIL training pipeline fraud: training pipeline: done"]


def test_a_release_the_plan_declares_but_helm_does_not_list_is_missing(cluster, capsys):
    del cluster["releases"]["mlflow"]
    assert cluster["run"]() == 1
    assert "releases not deployed: {'mlflow': 'missing'}" in capsys.readouterr().out
