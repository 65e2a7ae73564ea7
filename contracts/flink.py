"""The streaming-features Flink job's names, metrics, alert rules and dashboard queries, shared by the cluster
side (infra/workloads/flink.py) and the tests that check every rule has its runbook and every metric its exporter.

The job (the `ModelSpec.stream.job` module of the model that declares a stream) runs as one FlinkDeployment of
the Flink Kubernetes Operator. Its JobManager and TaskManagers export Flink's metrics through the Prometheus
reporter (`flink_jobmanager_*`, `flink_taskmanager_*`: the metric scope joined by underscores, Flink docs
"Metric Reporters", Prometheus); the job's own operator metrics (`lateTransactions`, `newestEventTimeMs`, ...)
appear under the operator scope. Feature freshness is the time since the newest event the job wrote.
"""

from __future__ import annotations

from typing import Any

from contracts.alerts import Alert, Dashboard, job_rule_groups, operator_down, operator_up_panel

OPERATOR_NAMESPACE = "flink-operator"
JOB_NAMESPACE = "flink-jobs"
CERT_MANAGER_NAMESPACE = "cert-manager"
DEPLOYMENT_NAME = "streaming-features"
CONSUMER_GROUP_PREFIX = "mlplat-flink-"
METRICS_PORT = 9249  # Flink's Prometheus reporter (job and task managers)
OPERATOR_METRICS_PORT = 9999  # the operator's own Prometheus reporter
STALE_AFTER_MINUTES = 15
# The job prints this once its graph is submitted; the local platform waits for it (local/flink_local.py).
RUNNING_MARKER = "streaming job running:"

_JOB = f'namespace="{JOB_NAMESPACE}"'
UPTIME = f"flink_jobmanager_job_uptime{{{_JOB}}}"
RESTARTS = f"flink_jobmanager_job_numRestarts{{{_JOB}}}"
CHECKPOINT_FAILURES = f"flink_jobmanager_job_numberOfFailedCheckpoints{{{_JOB}}}"
LATE = f"flink_taskmanager_job_task_operator_lateTransactions{{{_JOB}}}"
INVALID = f"flink_taskmanager_job_task_operator_invalidTransactions{{{_JOB}}}"
WRITES = f"flink_taskmanager_job_task_operator_featureRowsWritten{{{_JOB}}}"
NEWEST_EVENT_MS = f"flink_taskmanager_job_task_operator_newestEventTimeMs{{{_JOB}}}"
FRESHNESS_SECONDS = f"time() - max({NEWEST_EVENT_MS}) / 1000"

ALERTS: tuple[Alert, ...] = (
    Alert("MLPlatStreamingJobDown", f"absent({UPTIME} > 0)", "5m", "critical",
          "the streaming-features Flink job is not running for 5 m: online velocity features stop updating",
          "streaming-job-down.md"),
    Alert("MLPlatStreamingJobRestarting", f"sum(increase({RESTARTS}[15m])) > 2", "0m", "warning",
          "the streaming-features Flink job restarted more than twice in 15 m", "streaming-job-restarting.md"),
    Alert("MLPlatStreamingFeaturesStale", f"{FRESHNESS_SECONDS} > {STALE_AFTER_MINUTES * 60}", "10m", "critical",
          f"the newest event the streaming job wrote is older than {STALE_AFTER_MINUTES} m: online velocity "
          "features are stale (no traffic, a stuck source or a failing online-store write)",
          "streaming-features-stale.md"),
    Alert("MLPlatStreamingLateEvents", f"sum(rate({LATE}[15m])) / clamp_min(sum(rate({WRITES}[15m])), 1e-9) > 0.01",
          "15m", "warning",
          "more than 1 % of transactions arrive behind the watermark beyond the allowed lateness (not counted "
          "online)", "streaming-late-events.md"),
    operator_down("MLPlatFlinkOperatorDown", OPERATOR_NAMESPACE,
                  "the Flink Kubernetes Operator is not scraped as up for 10 m: the streaming job is not reconciled",
                  "flink-operator-down.md"),
)

# Job uptime and restarts, feature freshness, writes, late and invalid events, checkpoints, the operator.
DASHBOARD = Dashboard(
    "ML platform / Streaming features", "mlplat-streaming-features",
    "Health of the streaming-features Flink job and the freshness of the online features it writes.",
    ("mlplatform", "flink", "features"), "now-24h", (
        ("Streaming job uptime", f"max({UPTIME}) / 1000", "s", "uptime"),
        ("Job restarts (15 m)", f"sum(increase({RESTARTS}[15m]))", "short", "restarts"),
        ("Feature freshness: seconds since the newest written event", FRESHNESS_SECONDS, "s", "freshness"),
        ("Feature rows written per second", f"sum(rate({WRITES}[5m]))", "short", "rows/s"),
        ("Late transactions (behind the watermark, not counted) per second", f"sum(rate({LATE}[5m]))", "short",
         "late/s"),
        ("Invalid transactions per second", f"sum(rate({INVALID}[5m]))", "short", "invalid/s"),
        ("Failed checkpoints", f"max({CHECKPOINT_FAILURES})", "short", "failed checkpoints"),
        operator_up_panel("Flink operator up", OPERATOR_NAMESPACE),
    ))


def rule_groups(runbook_base_url: str) -> list[dict[str, Any]]:
    """PrometheusRule `spec.groups` of the streaming-features job."""
    return job_rule_groups("mlplatform-streaming-features", ALERTS, runbook_base_url)
