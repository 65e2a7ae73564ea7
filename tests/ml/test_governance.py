"""Model governance against a real MLflow server (127.0.0.1, SQLite): model cards checked field by field
against the run that produced them, approval before production on a stack that requires it, training
data refused with pandera's report and the refusal recorded, and the drift report (Evidently) on a
window of serving samples.

The CLI runs in subprocesses, as a user runs it."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from contracts import model_registry
from ml.models.fraud import data as fraud_data
from ml.training.tracking import mlflow_key

pytestmark = pytest.mark.ml
REPO = Path(__file__).resolve().parents[2]


def mlplat(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=full, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def trained(mlflow_server, tmp_path_factory):
    """`mlplat model train fraud` on generated data with prod's stack file (promotion gatesAndApproval)."""
    work = tmp_path_factory.mktemp("governance")
    audit = work / "audit.jsonl"
    env = {"MLPLAT_AUDIT_LOG": str(audit)}
    out = mlplat("model", "train", "fraud", "--data", str(work / "data"), "--sample", "--out", str(work / "artifact"),
                 "--tracking-uri", mlflow_server.url, "--stack-file", "stacks/Pulumi.prod.yaml", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return {"doc": json.loads(out.stdout), "work": work, "env": env, "audit": audit, "url": mlflow_server.url}


def test_training_on_a_stack_requiring_approval_registers_without_promoting(trained):
    registry = trained["doc"]["registry"]
    assert registry["gates_passed"] is True and registry["promotion"] == "gatesAndApproval"
    assert registry["aliases"] == ["challenger"] and registry["pending_approval"] is True
    client = MlflowClient(tracking_uri=trained["url"])
    version = client.get_model_version("fraud", registry["version"])
    assert version.tags["approval.pending"] == "true" and "champion" not in version.aliases


def test_model_card_fields_equal_the_run_that_produced_them(trained):
    version = trained["doc"]["registry"]["version"]
    shown = mlplat("model", "card", "fraud", "--version", version, "--json", "--tracking-uri", trained["url"])
    assert shown.returncode == 0, shown.stderr[-3000:]
    card = json.loads(shown.stdout)
    client = MlflowClient(tracking_uri=trained["url"])
    mv = client.get_model_version("fraud", version)
    run = client.get_run(mv.run_id)
    spec = model_registry.get("fraud")

    assert card["model"] == {**card["model"], "name": "fraud", "version": version, "run_id": mv.run_id,
                             "description": spec.description}
    assert card["intended_use"] == spec.intended_use
    # Metrics: every held-out metric of the run, and nothing else.
    logged = {k: v for k, v in run.data.metrics.items() if not k.startswith(("gate.", "validation."))}
    assert {mlflow_key(k): v for k, v in card["evaluation"]["metrics"].items()} == pytest.approx(logged)
    assert card["evaluation"]["protocol"].startswith("Stratified split")
    assert set(card["evaluation"]["segments"]) == {"domestic", "foreign"}
    # Parameters and row counts as logged on the run (MLflow stores params as text).
    params = {k: v for k, v in run.data.params.items() if not k.startswith("data.")}
    assert {mlflow_key(k) for k in card["training"]["params"]} == set(params)
    for key, value in card["training"]["params"].items():
        logged_value = params[mlflow_key(key)]  # text; a dict param was logged as its repr
        assert (ast.literal_eval(logged_value) == value) if isinstance(value, dict) else logged_value == str(value)
    for key, value in card["data"]["rows"].items():
        assert run.data.params[f"data.{key}"] == str(value)
    # Data sources: the file the run trained on, with its SHA-256.
    (source,) = card["data"]["sources"]
    path = trained["work"] / "data" / fraud_data.FILE
    assert source["file"] == fraud_data.FILE and source["bytes"] == path.stat().st_size
    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["features"] == fraud_data.FEATURES
    # Gates: threshold metrics and pass/fail tags of the run.
    assert card["gates"]["passed"] is (run.data.tags["gate.passed"] == "true")
    assert card["gates"]["summary"] == run.data.tags["gate.summary"]
    for check in card["gates"]["checks"]:
        key = mlflow_key(check["metric"])
        assert run.data.metrics[f"gate.{key}.threshold"] == check["threshold"]
        assert run.data.tags[f"gate.{key}"] == ("pass" if check["passed"] else "fail")
        assert check["value"] == pytest.approx(run.data.metrics[key])
    # Validation: pandera's summary equals the run's tag, metrics and report artifact.
    validation = card["validation"]
    assert validation["library"].startswith("pandera ") and validation["passed"] is True
    assert run.data.tags["validation.passed"] == "true"
    assert run.data.metrics["validation.checks"] == validation["checks"]
    report = json.loads(Path(client.download_artifacts(mv.run_id, validation["report"], str(trained["work"])))
                        .read_text())
    assert report["passed"] is True and {r["schema"] for r in report["results"]} == set(validation["schemas"])
    assert card["promotion"] == {"policy": "gatesAndApproval", "champion_at_registration": False,
                                 "pending_approval": True}
    assert card["limitations"] and card["registry"]["approval"] is None
    # The Markdown card shows the same run.
    text = mlplat("model", "card", "fraud", "--version", version, "--tracking-uri", trained["url"]).stdout
    assert f"# Model card: fraud v{version}" in text and mv.run_id in text and source["sha256"] in text


@pytest.fixture
def own_version(trained, tmp_path):
    """A version of its own (the same run, with the same tags) and an audit log of its own, for a test that
    approves or retags: the module's `trained` version keeps the state the other tests read, in any order."""
    client = MlflowClient(tracking_uri=trained["url"])
    mv = client.get_model_version("fraud", trained["doc"]["registry"]["version"])
    new = client.create_model_version("fraud", mv.source, run_id=mv.run_id, tags=dict(mv.tags))
    audit = tmp_path / "audit.jsonl"
    return {"version": new.version, "env": {"MLPLAT_AUDIT_LOG": str(audit)}, "audit": audit}


def _champion(client: MlflowClient) -> str | None:
    try:
        return str(client.get_model_version_by_alias("fraud", "champion").version)
    except MlflowException:
        return None


def test_approve_records_tags_and_audit_then_promotes(trained, own_version):
    """On prod (GitOps, reviewed pull requests) the approval is recorded but `champion` follows the deploy branch,
    so it does not move here; without a GitOps stack the approval promotes."""
    version = own_version["version"]
    client = MlflowClient(tracking_uri=trained["url"])
    before = _champion(client)
    out = mlplat("model", "approve", "fraud", version, "--by", "alice", "--reason", "card reviewed",
                 "--stack-file", "stacks/Pulumi.prod.yaml", "--tracking-uri", trained["url"], env=own_version["env"])
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["champion"] == before and _champion(client) == before
    assert f"mlplat model promote fraud {version} --stack-file stacks/Pulumi.prod.yaml" in doc["next"]
    assert "mlplat model follow" in doc["next"]
    mv = client.get_model_version("fraud", version)
    assert mv.tags["approval.status"] == "approved" and mv.tags["approval.by"] == "alice"
    assert mv.tags["approval.reason"] == "card reviewed" and "approval.pending" not in mv.tags
    (entry,) = [json.loads(line) for line in own_version["audit"].read_text().splitlines()]
    assert entry["actor"] == "alice" and entry["env"] == "prod" and entry["runbook"] == "model-approve"
    assert entry["target"] == f"models:/fraud/{version}" and entry["result"] == "ok"
    card = json.loads(mlplat("model", "card", "fraud", "--version", version, "--json", "--tracking-uri",
                             trained["url"]).stdout)
    assert card["registry"]["approval"]["by"] == "alice"
    out = mlplat("model", "approve", "fraud", version, "--by", "alice", "--reason", "card reviewed",
                 "--tracking-uri", trained["url"], env=own_version["env"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert _champion(client) == version
    card = json.loads(mlplat("model", "card", "fraud", "--json", "--tracking-uri", trained["url"]).stdout)
    assert "champion" in card["registry"]["aliases"]


def test_an_approval_never_overrides_failed_gates(trained, own_version):
    client = MlflowClient(tracking_uri=trained["url"])
    version = own_version["version"]
    client.set_model_version_tag("fraud", version, "gate.passed", "false")
    out = mlplat("model", "approve", "fraud", version, "--by", "bob", "--reason", "ship it",
                 "--tracking-uri", trained["url"], env=own_version["env"])
    assert out.returncode == 1 and "lacks passing quality gates" in out.stderr
    assert "approval.status" not in client.get_model_version("fraud", version).tags


def test_broken_training_data_fails_the_run_with_pandera_report(mlflow_server, tmp_path):
    fraud_data.generate_sample(tmp_path, rows=200)
    path = tmp_path / fraud_data.FILE
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = "25"  # transaction_hour outside 0..23
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    out = mlplat("model", "train", "fraud", "--data", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--tracking-uri", mlflow_server.url)
    assert out.returncode == 1
    assert "column 'transaction_hour', row 5: value outside the allowed range 0..23 (value '25')" in out.stderr
    assert '"library": "pandera' in out.stderr and '"check": "value outside the allowed range 0..23"' in out.stderr
    client = MlflowClient(tracking_uri=mlflow_server.url)
    exp = client.get_experiment_by_name("mlplat-fraud")
    failed = client.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
    assert failed and failed[0].data.tags["validation.passed"] == "false"


def test_drift_report_on_a_window_of_serving_samples(tmp_path):
    """Evidently finds the shifted feature and not the unshifted ones; pandera flags invalid rows."""
    import numpy as np

    from ml.data.drift import Reference
    from ml.data.drift_report import run
    from ml.serving.serving_log import ServingSampler

    rng = np.random.default_rng(0)
    n = 2000
    train = {"score": rng.random(n), "amount": rng.gamma(1.6, 110.0, n), "transaction_hour": rng.integers(0, 24, n),
             "device_trust_score": rng.integers(25, 99, n), "velocity_last_24h": rng.poisson(2.1, n),
             "cardholder_age": rng.integers(18, 70, n)}
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    Reference.from_columns(train).save(model_dir)
    sampler = ServingSampler(str(tmp_path / "samples"), "fraud", "7", rate=1.0)
    m = 600
    live = {**{k: v[:m] for k, v in train.items()}, "amount": rng.gamma(1.6, 110.0, m) * 3}  # amounts tripled
    live["cardholder_age"] = np.where(np.arange(m) == 500, 150, live["cardholder_age"][:m])  # one bad age
    sampler.add(live)
    sampler.flush()
    summary = run("fraud", samples=str(tmp_path / "samples"), model=str(model_dir), window=500,
                  out=str(tmp_path / "reports"), log_to_mlflow=False)
    assert summary["window"]["rows"] == 500 and summary["window"]["versions"] == {"7": 500}
    assert "amount" in summary["drifted_columns"] and "score" not in summary["drifted_columns"]
    assert summary["prediction_drift"]["drifted"] is False
    assert summary["validation"]["passed"] is False and summary["validation"]["failures"] == 1
    folder = Path(summary["report"])
    assert {p.name for p in folder.iterdir()} == {"report.html", "report.json", "summary.json", "validation.json"}
    html = (folder / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and "amount" in html and "cardholder_age" in html


def test_sampled_rows_are_written_on_a_timer_without_further_requests(tmp_path):
    """A burst smaller than a file's worth of rows reaches the samples within the flush period, with no later
    request to trigger the write (a drift report right after the burst sees every row)."""
    from ml.serving.serving_log import FLUSH_ROWS, ServingSampler, read_window

    sampler = ServingSampler(str(tmp_path), "fraud", "3", rate=1.0, flush_s=0.2)
    for i in range(FLUSH_ROWS - 1):
        sampler.add({"amount": [float(i)], "score": [0.5]})
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline and len(rows) < FLUSH_ROWS - 1:
        time.sleep(0.1)
        rows = read_window(str(tmp_path), "fraud", 10_000)
    assert len(rows) == FLUSH_ROWS - 1
    assert {r["_version"] for r in rows} == {"3"}
    sampler.add({"amount": [1.0], "score": [0.1]})
    sampler.close()  # what is buffered at unload is written too
    assert len(read_window(str(tmp_path), "fraud", 10_000)) == FLUSH_ROWS


def test_an_approval_never_demotes_a_newer_champion(trained, own_version):
    """Approving a version older than the champion with promotion is refused before anything is recorded;
    `--no-promote` still records the approval and leaves the champion where it is."""
    client = MlflowClient(tracking_uri=trained["url"])
    older = own_version["version"]
    mv = client.get_model_version("fraud", older)
    newer = client.create_model_version("fraud", mv.source, run_id=mv.run_id, tags=dict(mv.tags)).version
    client.set_registered_model_alias("fraud", "champion", newer)
    out = mlplat("model", "approve", "fraud", older, "--by", "carol", "--reason", "looks fine",
                 "--tracking-uri", trained["url"], env=own_version["env"])
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"fraud@champion is v{newer}, newer than v{older}: approving v{older} with promotion would demote it" \
           in out.stderr and "model-rollback" in out.stderr
    assert client.get_model_version_by_alias("fraud", "champion").version == newer
    assert "approval.status" not in client.get_model_version("fraud", older).tags
    assert not own_version["audit"].exists()
    recorded = mlplat("model", "approve", "fraud", older, "--by", "carol", "--reason", "looks fine", "--no-promote",
                      "--tracking-uri", trained["url"], env=own_version["env"])
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    assert json.loads(recorded.stdout)["champion"] == newer
    assert client.get_model_version_by_alias("fraud", "champion").version == newer
