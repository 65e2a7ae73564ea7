"""Optional local Prometheus: scrapes MLServer's metrics port with the cluster's alert rules.

Started by `local up` only when the `prometheus` binary exists (Debian package `prometheus`). The
rule groups are not written here: they are read from the workloads layer, the same groups the
cluster's PrometheusRule carries, and checked with `promtool check rules` before Prometheus starts.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from workloads.models.serving.processes import Service, _http_ok

WORKLOADS_DIR = Path(__file__).resolve().parents[1]
# Where the workloads layer may expose its rules: a function returning rule groups (or a whole
# PrometheusRule manifest), or YAML files. The first one found wins.
RULE_FUNCTIONS = (
    ("workloads.observability", "alert_rule_groups"),
    ("workloads.observability", "alert_rules"),
    ("workloads.alerts", "alert_rule_groups"),
    ("workloads.alerts", "alert_rules"),
)
RULE_GLOBS = ("**/alert*rules*.y*ml", "**/alerts*.y*ml", "**/prometheus*rules*.y*ml")


def binaries() -> tuple[str | None, str | None]:
    return shutil.which("prometheus"), shutil.which("promtool")


def _groups(doc: Any) -> list[dict[str, Any]]:
    """Rule groups from a rules file, a PrometheusRule manifest or a bare list of groups."""
    if isinstance(doc, list):
        return [g for g in doc if isinstance(g, dict) and "rules" in g]
    if isinstance(doc, dict):
        if "spec" in doc:
            return _groups(doc["spec"])
        if "groups" in doc:
            return _groups(doc["groups"])
    return []


def find_alert_rules() -> tuple[list[dict[str, Any]], str | None]:
    """The cluster's alert rule groups and where they came from; ([], None) if none are exposed yet."""
    for module_name, attr in RULE_FUNCTIONS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        func = getattr(module, attr, None)
        if callable(func):
            groups = _groups(func())
            if groups:
                return groups, f"{module_name}.{attr}()"
    for pattern in RULE_GLOBS:
        for path in sorted(WORKLOADS_DIR.glob(pattern)):
            if "local" in path.relative_to(WORKLOADS_DIR).parts:
                continue
            groups = _groups(yaml.safe_load(path.read_text()))
            if groups:
                return groups, str(path.relative_to(WORKLOADS_DIR.parent))
    return [], None


def write_config(workdir: Path, metrics_target: str, groups: list[dict[str, Any]],
                 interval_s: int = 5) -> tuple[Path, Path | None]:
    """prometheus.yml scraping `metrics_target` (host:port) plus rules/alerts.yml; return both paths."""
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
        return _http_ok(f"{self.url}/-/ready")
