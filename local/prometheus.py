"""Optional local Prometheus: scrapes MLServer's metrics port with the cluster's alert rules.

Started by `local up` only when the `prometheus` binary exists (Debian package `prometheus`). The
rule groups are not written here: they are `contracts.alerts.rule_groups`, the same groups the
cluster's PrometheusRule carries (runbook links point into this checkout), checked with
`promtool check rules` before Prometheus starts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from contracts import alerts, rollback
from contracts.pipelines import retrain_rule_groups
from ml.serving.processes import PROMETHEUS_DIR_VARIABLES, Service, http_ok

REPO_ROOT = Path(__file__).resolve().parents[1]


def binaries() -> tuple[str | None, str | None]:
    return shutil.which("prometheus"), shutil.which("promtool")


def find_alert_rules() -> tuple[list[dict[str, Any]], str]:
    """The cluster's PrometheusRule groups (`contracts.alerts.rule_groups`), runbook links to this checkout."""

    return alerts.rule_groups(REPO_ROOT.as_uri() + "/"), "contracts/alerts.py"


def rollback_rules(models: tuple[str, ...], interval_s: int) -> list[dict[str, Any]]:
    """The automatic-rollback groups of contracts/rollback.py with windows scaled to the local interval."""

    return rollback.rule_groups(models, REPO_ROOT.as_uri() + "/", local_timing(interval_s))


def local_timing(interval_s: int) -> rollback.Timing:
    """The rollback rules' windows scaled to the local scrape interval (the rollout analysis uses the same)."""
    return rollback.Timing(rate_window=f"{6 * interval_s}s", error_for=f"{2 * interval_s}s",
                           latency_for=f"{6 * interval_s}s", f1_window="10m", f1_for=f"{12 * interval_s}s",
                           interval=f"{interval_s}s")


def alerts_page(base_url: str) -> str:
    """The URL of the running Prometheus' alerts page. Debian's prometheus 2.42 package is built without the
    React UI, so it serves only the classic pages (`/classic/alerts`; `/alerts` answers 404); an upstream build
    serves `/alerts`."""
    base = base_url.rstrip("/")
    return f"{base}/alerts" if http_ok(f"{base}/alerts") else f"{base}/classic/alerts"


def retrain_rules(models: tuple[str, ...], interval_s: int) -> list[dict[str, Any]]:
    """The drift-retrain groups of contracts/pipelines.py, `for` scaled to the local interval."""

    return retrain_rule_groups(models, REPO_ROOT.as_uri() + "/", for_=f"{6 * interval_s}s", interval=f"{interval_s}s")


def write_config(workdir: Path, metrics_target: str, groups: list[dict[str, Any]],
                 interval_s: int = 5, alerts_target: str | list[str] | None = None,
                 extra_targets: dict[str, str] | None = None) -> tuple[Path, Path | None]:
    """prometheus.yml scraping `metrics_target` (host:port) plus rules/alerts.yml; return both paths.
    `alerts_target` (host:port, or several): where firing alerts are posted (the automatic-rollback and
    drift-retrain receivers speak the Alertmanager v2 alerts API; the local platform runs no Alertmanager)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = None
    config: dict[str, Any] = {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "scrape_configs": [{
            "job_name": "mlserver",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [metrics_target], "labels": {"namespace": "local"}}],
        }],
    }
    for job, target in (extra_targets or {}).items():  # job name -> host:port (/metrics)
        config["scrape_configs"].append({"job_name": job, "metrics_path": "/metrics",
                                         "static_configs": [{"targets": [target], "labels": {"namespace": "local"}}]})
    targets = [alerts_target] if isinstance(alerts_target, str) else list(alerts_target or [])
    if targets:
        config["alerting"] = {"alertmanagers": [{"api_version": "v2",
                                                  "static_configs": [{"targets": targets}]}]}
    if groups:
        rules_path = workdir / "rules" / "alerts.yml"
        rules_path.parent.mkdir(exist_ok=True)
        rules_path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        config["rule_files"] = [str(rules_path)]
    cfg_path = workdir / "prometheus.yml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg_path, rules_path


def check_rules(rules_path: Path) -> str:
    """Run `promtool check rules`; raise ValueError with promtool's message if they are invalid."""
    _, promtool = binaries()
    if promtool is None:
        raise FileNotFoundError("promtool is not installed (Debian package `prometheus`)")
    out = subprocess.run([promtool, "check", "rules", str(rules_path)], capture_output=True, text=True,
                         timeout=60, check=False)
    if out.returncode != 0:
        raise ValueError(f"promtool check rules {rules_path} failed:\n{out.stdout}{out.stderr}")
    return out.stdout.strip()


class PrometheusServer(Service):
    name = "prometheus"

    def __init__(self, workdir: str | Path, port: int) -> None:
        super().__init__(workdir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def command(self) -> list[str]:
        exe, _ = binaries()
        if exe is None:
            raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
        return [
            exe, f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")


class _AlertReceiver(Service):
    """An alert webhook receiver (ml/serving/alert_receiver.py) on 127.0.0.1, healthy when /healthz answers."""

    def __init__(self, workdir: str | Path, port: int, cfg: Any) -> None:
        super().__init__(workdir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.cfg = cfg

    def ready(self) -> bool:
        return http_ok(f"{self.url}/healthz")

    def env(self) -> dict[str, str]:
        import os

        # Not the launcher's prometheus_client directory (feast's, deleted when `local up` exits).
        return {k: v for k, v in os.environ.items() if k not in PROMETHEUS_DIR_VARIABLES}


class AutoRollbackReceiver(_AlertReceiver):
    """runbooks/autorollback.py on 127.0.0.1: runs the model-rollback runbook when a rollback alert fires."""

    name = "autorollback"

    def command(self) -> list[str]:
        import sys

        return [sys.executable, "-m", "runbooks.autorollback", "--env", "local", "--host", "127.0.0.1",
                "--port", str(self.port), "--tracking-uri", self.cfg.mlflow_url, "--serving-url", self.cfg.url("http"),
                "--state-dir", str(self.cfg.state_dir), "--audit-log", str(self.cfg.path("runbook-audit.jsonl"))]


class RetrainReceiver(_AlertReceiver):
    """local/retrain_receiver.py on 127.0.0.1: runs a model's pipeline (kfp.local) when its drift alert fires."""

    name = "retrain"

    def command(self) -> list[str]:
        import sys

        return [sys.executable, "-m", "local.retrain_receiver", "--listen", "127.0.0.1",
                "--port", str(self.port), "--arguments", str(self.cfg.path("pipelines", "retrain.json")),
                "--root", str(self.cfg.path("pipelines", "root")), "--logs", str(self.cfg.path("pipelines")),
                "--state-dir", str(self.cfg.state_dir), "--cooldown-s", str(self.cfg.retrain_cooldown_s)]
