"""Every runbook is documented and executable; every alert points at one with a diagnosis step that
runs against a real Prometheus."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from contracts.alerts import ALERTS
from runbooks.alerts import ALERT_RUNBOOKS
from runbooks.catalog import EXECUTABLE, RUNBOOK_DIR, documents, render_index
from runbooks.context import RunContext
from runbooks.engine import AuditLog, run

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {
    "eks-upgrade", "nodegroup-scaling", "nodegroup-rotation", "redis-failover-test", "redis-auth-rotation",
    "redis-snapshot-restore", "msk-storage-expansion", "msk-broker-replacement", "msk-consumer-lag",
    "rds-point-in-time-restore", "s3-object-recovery", "model-rollback", "canary-promotion", "feature-backfill",
    "disaster-recovery",
}
SECTIONS = ("trigger", "impact", "precondition", "steps", "verification", "rollback", "escalation")


def test_every_required_runbook_is_documented_and_executable():
    docs = {d.name: d for d in documents()}
    assert docs.keys() >= REQUIRED
    assert set(docs) == set(EXECUTABLE), "every document has steps and every runbook a document"
    for name, doc in docs.items():
        text = doc.path.read_text().lower()
        assert [s for s in SECTIONS if s not in text] == [], name


def test_every_alert_runbook_url_resolves_to_a_runbook_with_executable_diagnosis():
    by_name = {rb.name: rb for rb in ALERT_RUNBOOKS}
    for alert in ALERTS:
        rule = alert.rule("https://github.com/example/mlplatform/blob/main/")
        path = rule["annotations"]["runbook_url"].split("/blob/main/", 1)[1]
        assert (ROOT / path).is_file(), path
        runbook = by_name[Path(path).stem]
        assert any(step.read_only for step in runbook.steps)
        assert EXECUTABLE[runbook.name] is runbook


def test_runbooks_index_is_current():
    assert (ROOT / "docs" / "RUNBOOKS.md").read_text() == render_index(), "run `mlplat runbook index`"


@pytest.mark.integration
def test_cli_list_and_unknown_runbook():
    listed = subprocess.run([sys.executable, "-m", "mlplat", "runbook", "list"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert listed.returncode == 0
    assert {line.split()[0] for line in listed.stdout.splitlines()} == {d.name for d in documents()}
    unknown = subprocess.run([sys.executable, "-m", "mlplat", "runbook", "run", "nope"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr
    wrong_env = subprocess.run([sys.executable, "-m", "mlplat", "runbook", "run", "redis-failover-test", "--env",
                                "dev"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert wrong_env.returncode == 2 and "applies to staging, prod, not dev" in wrong_env.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Exporter(BaseHTTPRequestHandler):
    body = (
        "# TYPE mlplat_model_drift_psi gauge\n"
        'mlplat_model_drift_psi{model="fraud",feature="amount"} 0.35\n'
        'mlplat_model_drift_psi{model="fraud",feature="transaction_hour"} 0.05\n'
    )

    def do_GET(self):
        payload = self.body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus(tmp_path):
    """A real Prometheus scraping a tiny exporter every second, on 127.0.0.1."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: run scripts/bootstrap.sh system")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "runtime", "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_port}"]}]}]}))
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{url}/api/v1/query", params={"query": "mlplat_model_drift_psi"}, timeout=2)
                if r.status_code == 200 and r.json()["data"]["result"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not scrape the exporter in 60 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        exporter.shutdown()


@pytest.mark.integration
def test_drift_diagnosis_names_the_breaching_feature(prometheus, tmp_path):
    runbook = EXECUTABLE["model-drift"]
    out = io.StringIO()
    run(runbook, RunContext(env="local", prometheus_url=prometheus), execute=False,
        audit=AuditLog(tmp_path / "a"), out=out)
    text = out.getvalue()
    assert "FIRING CONDITION MET" in text
    assert "'feature': 'amount'" in text and "transaction_hour" not in text
    assert not (tmp_path / "a").exists()  # diagnosis writes no audit entries


@pytest.mark.integration
def test_error_rate_diagnosis_reports_quiet_condition_and_missing_serving(prometheus, tmp_path):
    out = io.StringIO()
    report = run(EXECUTABLE["model-error-rate"], RunContext(env="local", prometheus_url=prometheus),
                 execute=False, audit=AuditLog(tmp_path / "a"), out=out)
    assert "condition not met now" in out.getvalue()
    assert not report.ok and "no inference endpoint" in out.getvalue()


def test_diagnosis_names_an_unreachable_prometheus(tmp_path):
    out = io.StringIO()
    url = f"http://127.0.0.1:{_free_port()}"
    report = run(EXECUTABLE["redis-hit-rate"], RunContext(env="local", prometheus_url=url), execute=False,
                 audit=AuditLog(tmp_path / "a"), out=out)
    assert not report.ok and f"Prometheus at {url} is unreachable" in out.getvalue()


def test_runbook_directory_is_the_repository_one():
    assert RUNBOOK_DIR == ROOT / "runbooks"
