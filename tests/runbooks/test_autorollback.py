"""Automatic rollback: the rules' semantics under `promtool test rules` (real promtool), and the receiver's
decisions against a real MLflow server (which version is the candidate, disabled mode, both alert formats).
The end-to-end run with a real Prometheus and MLServer is tests/local/test_autorollback_e2e.py."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from contracts import model_registry
from contracts.governance import AuditLog
from contracts.rollback import Timing, rule_groups
from ml.serving.alert_receiver import make_handler
from runbooks.autorollback import DISABLE_ENV, Receiver
from runbooks.context import RunContext

TIMING = Timing(rate_window="5m", error_for="1m", latency_for="1m", f1_window="10m", f1_for="2m", interval="1m")


def _rules_file(tmp_path: Path) -> Path:
    groups = rule_groups(["fraud"], "https://example.org/", TIMING)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # promtool compares annotations verbatim; the expressions are under test
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def _labels(trigger: str, version: str) -> dict[str, str]:
    return {"severity": "critical", "platform": "mlplatform", "action": "rollback", "trigger": trigger,
            "model": "fraud", "version": version}


@pytest.mark.integration
def test_each_trigger_fires_for_the_breaching_version_only(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run scripts/bootstrap.sh system (Debian package prometheus)")
    rules = _rules_file(tmp_path)
    req = 'mlplat_model_requests_total{{model="fraud",version="{v}",outcome="{o}"}}'
    bucket = 'mlplat_model_request_seconds_bucket{{model="fraud",version="{v}",le="{le}"}}'
    outcome = 'mlplat_ingestor_labelled_outcomes_total{{model="fraud",version="{v}",predicted="{p}",actual="{a}"}}'
    series = [
        # error rate: v2 answers 2 of 12 requests with an error (16.7 %), v1 1 of 101 (1 %)
        (req.format(v="1", o="ok"), "0+100x30"), (req.format(v="1", o="error"), "0+1x30"),
        (req.format(v="2", o="ok"), "0+10x30"), (req.format(v="2", o="error"), "0+2x30"),
        # latency: v1 answers within 5 ms, v2 between 10 and 25 ms
        *[(bucket.format(v="1", le=le), "0+10x30") for le in ("0.005", "0.01", "0.025", "+Inf")],
        (bucket.format(v="2", le="0.005"), "0x30"), (bucket.format(v="2", le="0.01"), "0x30"),
        (bucket.format(v="2", le="0.025"), "0+10x30"), (bucket.format(v="2", le="+Inf"), "0+10x30"),
        # F1 on labelled outcomes per minute: v1 2*9/(10+10) = 0.9, v2 2*5/(10+10) = 0.5; v3 too few outcomes
        (outcome.format(v="1", p=1, a=1), "0+9x30"), (outcome.format(v="1", p=1, a=0), "0+1x30"),
        (outcome.format(v="1", p=0, a=1), "0+1x30"), (outcome.format(v="1", p=0, a=0), "0+50x30"),
        (outcome.format(v="2", p=1, a=1), "0+5x30"), (outcome.format(v="2", p=1, a=0), "0+5x30"),
        (outcome.format(v="2", p=0, a=1), "0+5x30"), (outcome.format(v="2", p=0, a=0), "0+50x30"),
        (outcome.format(v="3", p=0, a=1), "0+1x30"),
    ]
    test = {
        "rule_files": [rules.name], "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "MLPlatRollbackErrorRate",
                 "exp_alerts": [{"exp_labels": _labels("error_rate", "2")}]},
                {"eval_time": "15m", "alertname": "MLPlatRollbackLatencyP99",
                 "exp_alerts": [{"exp_labels": _labels("latency_p99", "2")}]},
                {"eval_time": "15m", "alertname": "MLPlatRollbackF1Drop",
                 "exp_alerts": [{"exp_labels": _labels("f1_drop", "2")}]},
            ],
            "promql_expr_test": [{"expr": 'mlplat:model_f1{model="fraud"}', "eval_time": "15m", "exp_samples": [
                {"labels": 'mlplat:model_f1{model="fraud",version="1"}', "value": 0.9},
                {"labels": 'mlplat:model_f1{model="fraud",version="2"}', "value": 0.5},
            ]}],
        }],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    out = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # Every registered model's group in one file, as the cluster and the local Prometheus load them.
    every = tmp_path / "every.yml"
    every.write_text(yaml.safe_dump({"groups": rule_groups(model_registry.names(), "https://example.org/")}))
    check = subprocess.run([promtool, "check", "rules", str(every)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {4 * len(model_registry.names())} rules found" in check.stdout


@pytest.fixture
def registry(mlflow_url: str, tmp_path: Path) -> MlflowClient:
    """`fraud` with versions 1 and 2; champion = 2 (just promoted), challenger = 2."""
    client = MlflowClient(tracking_uri=mlflow_url)
    with contextlib.suppress(MlflowException):
        client.delete_registered_model("fraud")
    client.create_registered_model("fraud")
    for _ in range(2):
        run = client.create_run("0")
        client.create_model_version("fraud", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("fraud", "champion", "2")
    client.set_registered_model_alias("fraud", "challenger", "2")
    return client


def _receiver(mlflow_url: str, tmp_path: Path) -> tuple[Receiver, ThreadingHTTPServer, str]:
    def make_context(params: dict[str, str]) -> RunContext:
        return RunContext(env="local", tracking_uri=mlflow_url, params=dict(params),
                          serving_url="http://127.0.0.1:9")  # nothing listens: a rollback's reload step fails
    receiver = Receiver(make_context, AuditLog(tmp_path / "audit.jsonl"), state_dir=tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(receiver))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server, f"http://127.0.0.1:{server.server_address[1]}"


def _post(url: str, doc: object) -> dict:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _wait(receiver: Receiver, n: int) -> list[dict]:
    deadline = time.monotonic() + 60
    while len(receiver.decisions) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return receiver.decisions


def _alert(version: str, status: str = "firing") -> dict:
    return {"status": status, "labels": {**_labels("error_rate", version), "alertname": "MLPlatRollbackErrorRate"},
            "startsAt": "2026-01-01T00:00:00Z"}


def test_receiver_acts_on_the_candidate_only_and_honours_the_kill_switch(registry, mlflow_url, tmp_path,
                                                                        monkeypatch):
    receiver, server, base = _receiver(mlflow_url, tmp_path)
    try:
        # Alertmanager webhook: a resolved alert and one of an old version change nothing.
        doc = {"version": "4", "status": "firing", "alerts": [_alert("2", "resolved"), _alert("1")]}
        assert _post(f"{base}/alerts", doc) == {"accepted": 1}
        (ignored,) = _wait(receiver, 1)
        assert ignored["decision"] == "ignored" and "v1 is not the candidate" in ignored["detail"]
        # Disabled: recorded, nothing changes.
        monkeypatch.setenv(DISABLE_ENV, "off")
        assert _post(f"{base}/api/v2/alerts", [{"labels": _alert("2")["labels"], "endsAt": ""}]) == {"accepted": 1}
        disabled = _wait(receiver, 2)[1]
        assert disabled["decision"] == "disabled"
        assert registry.get_model_version_by_alias("fraud", "champion").version == "2"
        # Enabled (a pause file would disable it too): v2 is the candidate, but no MLServer listens here, so
        # serving could not follow: the rollback stops before it moves the alias (registry and serving keep
        # agreeing) and the receiver reports it.
        monkeypatch.delenv(DISABLE_ENV)
        receiver._handled.clear()
        assert _post(f"{base}/alerts", {"alerts": [_alert("2")]}) == {"accepted": 1}
        acted = _wait(receiver, 3)[2]
        assert acted["decision"] == "rollback failed", acted
        assert registry.get_model_version_by_alias("fraud", "champion").version == "2"
        assert any("precondition failed" in line and "http://127.0.0.1:9 does not answer" in line
                   for line in acted["runbook_output"]), acted["runbook_output"]
        # The same alert again (Alertmanager repeats) is not handled twice.
        assert _post(f"{base}/alerts", {"alerts": [_alert("2")]}) == {"accepted": 0}
        audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [e for e in audit if e["runbook"] == "model-rollback"] == []
        assert {e["actor"] for e in audit} == {"autorollback/MLPlatRollbackErrorRate"}
        with urllib.request.urlopen(f"{base}/decisions", timeout=10) as resp:
            assert [d["decision"] for d in json.loads(resp.read())] == ["ignored", "disabled", "rollback failed"]
    finally:
        server.shutdown()
        receiver.close()


def test_on_a_gitops_cluster_the_candidate_is_the_champion_the_deploy_branch_serves(registry, mlflow_url, tmp_path,
                                                                                   monkeypatch):
    """After a reviewed promotion is merged and before `follow` moved the alias, the served champion (the deploy
    branch's v3) breaching is acted on, not ignored as "not the candidate" because the alias still says v2."""
    from ml.delivery import gitops
    from stacks.config import load_stack_file, stack_file
    from stacks.delivery import deploy_parameter

    run_ = registry.create_run("0")
    registry.create_model_version("fraud", f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id)  # v3
    cfg = load_stack_file(stack_file("prod"))
    repo = gitops.local_repository(tmp_path / "deploy")
    gitops.publish_release(cfg, gitops.target_for(cfg, location=str(repo), bucket="models-b"),
                           gitops.Release("fraud", "3"))
    subprocess.run(["git", "branch", "-f", "main", "promote/prod/fraud-v3"], cwd=repo, check=True)  # merged
    monkeypatch.setenv("MLPLAT_DEPLOY", deploy_parameter(cfg, "models-b", location=str(repo)))
    receiver = Receiver(lambda params: RunContext(env="prod", tracking_uri=mlflow_url, params=dict(params)),
                        AuditLog(tmp_path / "audit.jsonl"), state_dir=tmp_path)
    try:
        receiver.handle({"alert": "MLPlatRollbackErrorRate", "model": "fraud", "version": "3"})
        (decision,) = receiver.decisions
        # Treated as the champion: the rollback runs (and stops at its precondition: no Kubernetes access here).
        assert decision["decision"] == "rollback failed", decision
        assert any("no Kubernetes access" in line for line in decision["runbook_output"]), decision["runbook_output"]
        assert registry.get_model_version_by_alias("fraud", "champion").version == "2"
    finally:
        receiver.close()
