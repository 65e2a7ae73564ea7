"""Automatic rollback end to end on the local platform, with a real Prometheus.

`mlplat local up --models fraud` (MLflow, MLServer, Prometheus with the rollback rules of
contracts/rollback.py, the receiver of runbooks/autorollback.py) serves fraud v1. A deliberately bad
v2 (its ONNX graph was exported for 7 inputs instead of 8, so every inference fails with a 5xx) is
registered and promoted the way a deployment would (alias + reload) while a client keeps sending
requests. The error-rate rule fires for v2, Prometheus posts the alert to the receiver, which runs the
model-rollback runbook: `champion` moves back to v1 and MLServer serves v1 again. Nobody intervenes.

Asserted: the champion and the served version are v1 again; no request fails other than those v2
answered (no refused connection, no 503 during the switch: every request after the first v1 answer
succeeds); the receiver's runbook actions are in the audit log with the alert as actor. Printed: the
time from the first failed request (the breach) to the rollback. Prometheus scrapes and evaluates
every second here (`MLPLAT_PROMETHEUS_INTERVAL_S=1`), so the rule's window is 6 s and its `for` 2 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contracts.local_platform import DEPLOY_REPO, DEPLOY_STACK
from ml.delivery import gitops
from ml.model_plugin import load_plugin
from stacks.config import load_stack_file

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = 120  # how long the test waits for the rollback (a deadline to stop waiting, not a measured figure)


def _run(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())



def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)

@pytest.fixture(scope="module")
def platform(autorollback_platform):
    up = autorollback_platform["up"]
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "automatic rollback" in up.stdout, up.stdout[-3000:]
    return autorollback_platform


def _bad_onnx() -> bytes:
    """A valid ONNX graph with the fraud model's input/output names but 7 input columns, not 8."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ml.models.fraud.onnx_export import INPUT, OUTPUT

    weights = numpy_helper.from_array(np.zeros((7, 1), dtype=np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", [INPUT, "w"], [OUTPUT])], "wrong-feature-list",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, 7])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _register_bad_version(client: MlflowClient, tmp: Path) -> str:
    """v1's artifact with the broken ONNX graph, registered as a new version that passed its gates
    (the evaluation harness used the right graph; the export shipped the wrong one)."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/fraud/1", dst_path=str(tmp / "v1")))
    (folder / "model.onnx").write_bytes(_bad_onnx())
    run = client.create_run(client.get_experiment_by_name("mlplat-fraud").experiment_id, run_name="bad-export")
    client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version("fraud", f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                          tags={"gate.passed": "true", "gate.summary": "copied from v1"})
    return str(version.version)


def test_a_bad_version_is_rolled_back_without_a_person(platform, tmp_path, consistent):
    client = MlflowClient(tracking_uri=platform["mlflow"])
    assert client.get_model_version_by_alias("fraud", "champion").version == "1"
    rules = _get(f"{platform['prometheus']}/api/v1/rules")
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"MLPlatRollbackErrorRate", "MLPlatRollbackLatencyP99", "MLPlatRollbackF1Drop"} <= names

    bad = _register_bad_version(client, tmp_path)
    bodies = load_plugin("fraud").sample_requests(platform["state"] / "data" / "sample", Path("."), n=20)
    results: list[tuple[float, int, str]] = []  # (time, HTTP status or 0, served version or error text)
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            req = urllib.request.Request(f"{platform['serving']}/v2/models/fraud/infer",
                                         data=json.dumps(bodies[i % len(bodies)]).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    results.append((time.time(), resp.status, json.loads(resp.read()).get("model_version")))
            except urllib.error.HTTPError as exc:
                results.append((time.time(), exc.code, exc.read().decode(errors="replace")[:200]))
            except OSError as exc:  # refused or reset connections count as failures too
                results.append((time.time(), 0, str(exc)))
            i += 1
            time.sleep(0.02)

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    _wait_for(lambda: sum(s == 200 and v == "1" for _t, s, v in list(results)) >= 20, "20 answers from v1")
    # The deployment: champion -> the bad version, serving reloads it.
    client.set_registered_model_alias("fraud", "champion", bad)
    reload = urllib.request.Request(f"{platform['serving']}/v2/repository/models/fraud/load", method="POST")
    with urllib.request.urlopen(reload, timeout=120) as resp:
        assert resp.status == 200
    promoted = time.time()

    _wait_for(lambda: client.get_model_version_by_alias("fraud", "champion").version == "1" and any(
        t > promoted and s == 200 and v == "1" for t, s, v in list(results)[-5:]),
        f"rolled back to v1 and answering within {BUDGET_S} s", timeout_s=BUDGET_S)
    # Keep the load on after the rollback: nothing may fail once v1 answers again.
    restored_at = len(results)
    _wait_for(lambda: sum(s == 200 and v == "1" for _t, s, v in list(results)[restored_at:]) >= 20,
              "20 more answers from v1 after the rollback")
    stop.set()
    sender.join(timeout=60)

    assert client.get_model_version_by_alias("fraud", "champion").version == "1"
    meta = _get(f"{platform['serving']}/v2/models/fraud")
    assert meta["versions"][0] == "1"
    consistent(platform["env"], fraud="1")  # registry alias, slot and served version agree after the rollback
    failures = [r for r in results if r[1] != 200]
    assert failures, "the bad version never failed a request"
    breach = failures[0][0]
    restored = next(t for t, s, v in results if t > breach and s == 200 and v == "1")
    # Only the bad version failed requests: every failure is a 5xx answered before serving went back to
    # v1, none is a refused connection, and nothing fails once v1 answers again.
    assert all(500 <= s < 600 for _, s, _ in failures), failures[:5]
    assert all(t < restored for t, _, _ in failures), [r for r in failures if r[0] >= restored][:5]
    assert all(s == 200 and v == "1" for t, s, v in results if t >= restored)
    assert not any(s == 200 and v == bad for _, s, v in results)

    decisions = _get(f"{platform['receiver']}/decisions")
    acted = [d for d in decisions if d["decision"] == "rolled back"]
    assert len(acted) == 1 and acted[0]["version"] == bad and acted[0]["alert"] == "MLPlatRollbackErrorRate"
    audit = [json.loads(line) for line in (platform["state"] / "runbook-audit.jsonl").read_text().splitlines()]
    steps = [e for e in audit if e["actor"] == "autorollback/MLPlatRollbackErrorRate"]
    assert [e["step"] for e in steps] == ["move the champion alias back", "make serving follow the alias"]
    assert all(e["result"] == "ok" and e["runbook"] == "model-rollback" for e in steps)
    # The deploy tree agrees (runbooks/deploy_tree.py): the first training's publish step committed fraud v1 to the
    # platform's deploy repository, and the rollback wrote v1 there before serving followed, so `mlplat local apply`
    # keeps the rollback.
    serving = next(e for e in steps if e["step"] == "make serving follow the alias")
    assert "fraud v1 -> champion (dev)" in serving["details"]["serving"], serving
    cfg = load_stack_file(DEPLOY_STACK)
    assert gitops.branch_versions(gitops.target_for(cfg, location=str(platform["state"] / DEPLOY_REPO)))["fraud"] == \
        {"champion": "1"}

    fired = acted[0]["received"] - breach
    print(f"\nbreach -> rollback: {restored - breach:.1f}s (first failed request -> first v1 answer); "
          f"breach -> alert at the receiver {fired:.1f}s; runbook {acted[0]['finished'] - acted[0]['started']:.1f}s; "
          f"{len(results)} requests, {len(failures)} answered by the bad v{bad} with a 5xx, 0 others failed")
