"""The platform's alert rules (PrometheusRule groups), each with a runbook under runbooks/.

Serving latency and errors are measured per model at MLServer (the REST path carries the model
name); inference failures from MLServer's data-plane counters; drift from the runtimes' PSI gauge;
the Redis hit rate from redis_exporter in front of ElastiCache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INFER = 'path=~"/v2/models/[^/]+(/versions/[^/]+)?/infer"'


def _p99(window: str) -> str:
    return (f"histogram_quantile(0.99, sum by (le, path) "
            f"(rate(rest_server_request_duration_seconds_bucket{{{INFER}}}[{window}])))")


def _error_ratio(window: str) -> str:
    return (f'sum by (path) (rate(rest_server_requests_total{{{INFER},status_code=~"5.."}}[{window}])) '
            f"/ sum by (path) (rate(rest_server_requests_total{{{INFER}}}[{window}]))")


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    runbook: str  # file name under runbooks/

    def rule(self, runbook_base_url: str) -> dict[str, Any]:
        return {
            "alert": self.name, "expr": self.expr, "for": self.for_,
            "labels": {"severity": self.severity, "platform": "mlplatform"},
            "annotations": {"summary": self.summary, "runbook_url": f"{runbook_base_url}runbooks/{self.runbook}"},
        }



# (title, expr, unit, legend) of a dashboard panel.
Panel = tuple[str, str, str, str]


@dataclass(frozen=True)
class Dashboard:
    """A Grafana dashboard of time series, one Prometheus query a panel (rendered by the cluster side)."""

    title: str
    uid: str
    description: str
    tags: tuple[str, ...]
    time_from: str  # the range shown by default, e.g. "now-24h"
    panels: tuple[Panel, ...]


def operator_down(name: str, namespace: str, summary: str, runbook: str) -> Alert:
    """A Kubernetes operator not scraped as up for 10 m (critical): its jobs are no longer reconciled."""
    return Alert(name, f'absent(up{{namespace="{namespace}"}} == 1)', "10m", "critical", summary, runbook)


def operator_up_panel(title: str, namespace: str) -> Panel:
    """The dashboard panel of whether an operator is scraped as up."""
    return (title, f'max(up{{namespace="{namespace}"}})', "short", "up")


def job_rule_groups(group: str, alerts: tuple[Alert, ...], runbook_base_url: str) -> list[dict[str, Any]]:
    """PrometheusRule `spec.groups` of a job: its alerts in one group, evaluated every minute."""
    return [{"name": group, "interval": "1m", "rules": [a.rule(runbook_base_url) for a in alerts]}]

ALERTS: tuple[Alert, ...] = (
    Alert("MLPlatModelLatencyP99Critical", f"{_p99('5m')} > 0.010", "5m", "critical",
          "p99 inference latency of {{ $labels.path }} is {{ $value | humanizeDuration }} (> 10 ms for 5 m)",
          "model-latency-p99-critical.md"),
    Alert("MLPlatModelErrorRateCritical", f"{_error_ratio('1m')} > 0.05", "1m", "critical",
          "{{ $labels.path }} answers {{ $value | humanizePercentage }} of requests with 5xx (> 5 % for 1 m)",
          "model-error-rate.md"),
    Alert("MLPlatModelAvailabilityLow", f"(1 - ({_error_ratio('1h')})) < 0.999", "5m", "critical",
          "availability of {{ $labels.path }} over 1 h is {{ $value | humanizePercentage }} (< 99.9 %)",
          "model-availability.md"),
    Alert("MLPlatInferenceFailuresHigh",
          "sum by (model) (rate(model_infer_request_failure_total[5m])) / (sum by (model) "
          "(rate(model_infer_request_success_total[5m])) + sum by (model) "
          "(rate(model_infer_request_failure_total[5m]))) > 0.01", "5m", "critical",
          "{{ $value | humanizePercentage }} of inferences of {{ $labels.model }} fail (> 1 %)",
          "inference-failures.md"),
    Alert("MLPlatModelLatencyP99Warning", f"{_p99('5m')} > 0.007", "15m", "warning",
          "p99 inference latency of {{ $labels.path }} is {{ $value | humanizeDuration }} (> 7 ms for 15 m)",
          "model-latency-p99-warning.md"),
    Alert("MLPlatModelDriftHigh", "max by (model, feature) (mlplat_model_drift_psi) > 0.2", "30m", "warning",
          "PSI of {{ $labels.feature }} for {{ $labels.model }} is {{ $value }} (> 0.2)", "model-drift.md"),
    Alert("MLPlatRedisHitRateLow",
          "sum(rate(redis_keyspace_hits_total[10m])) / (sum(rate(redis_keyspace_hits_total[10m])) "
          "+ sum(rate(redis_keyspace_misses_total[10m]))) < 0.9", "15m", "warning",
          "online feature store hit rate is {{ $value | humanizePercentage }} (< 90 %)", "redis-hit-rate.md"),
)


def rule_groups(runbook_base_url: str) -> list[dict[str, Any]]:
    """PrometheusRule `spec.groups`: critical and warning alerts in separate groups."""
    groups = []
    for severity in ("critical", "warning"):
        rules = [a.rule(runbook_base_url) for a in ALERTS if a.severity == severity]
        groups.append({"name": f"mlplatform-serving-{severity}", "interval": "30s", "rules": rules})
    return groups
