"""The batch-feature Spark job's names, alert rules and dashboard queries, shared by the cluster side
(infra/workloads/spark.py) and the tests that check every rule has its runbook and every metric its exporter.

The Spark Operator counts applications by outcome (`spark_application_success_count`,
`spark_application_failure_count`, ... at kubeflow/spark-operator v2.5.2 pkg/common/metrics.go), labelled
with the application labels named by its `--metrics-labels` (the chart's default: `app_type`), which the
scheduled job's applications inherit from the ScheduledSparkApplication. Feature freshness is the time since
the last successful run: the features in the offline store are as old as that run.
"""

from __future__ import annotations

from typing import Any

from contracts.alerts import Alert, Dashboard, job_rule_groups, operator_down, operator_up_panel

OPERATOR_NAMESPACE = "spark-operator"
JOB_NAME = "batch-features"
APP_TYPE = "batch-features"
_JOB = f'app_type="{APP_TYPE}"'
SUCCESS = f"spark_application_success_count{{{_JOB}}}"
FAILURE = f"spark_application_failure_count{{{_JOB}}}"
# The moment of the last successful run: the last 15-minute step in which the success counter rose.
LAST_SUCCESS = f"max(max_over_time((timestamp(increase({SUCCESS}[15m]) > 0))[7d:15m]))"
STALE_AFTER_HOURS = 26  # a daily schedule plus two hours for retries

ALERTS: tuple[Alert, ...] = (
    Alert("MLPlatBatchFeatureJobFailed", f"sum(increase({FAILURE}[1h])) > 0", "0m", "warning",
          "a run of the batch-feature Spark job failed in the last hour (retries exhausted)",
          "spark-feature-job-failed.md"),
    Alert("MLPlatBatchFeaturesStale", f"sum(increase({SUCCESS}[{STALE_AFTER_HOURS}h])) < 1", "1h", "critical",
          f"no successful run of the batch-feature Spark job for {STALE_AFTER_HOURS} h: the offline-store "
          "features (and what Feast materializes from them) are stale", "batch-features-stale.md"),
    operator_down("MLPlatSparkOperatorDown", OPERATOR_NAMESPACE,
                  "the Spark Operator's controller is not scraped as up for 10 m: no batch-feature job is submitted",
                  "spark-operator-down.md"),
)

# Job runs by outcome, running jobs, hours since the features were last computed, and the feature views'
# materialization (the CronJob that loads them online).
DASHBOARD = Dashboard(
    "ML platform / Batch features (Spark)", "mlplat-spark-features",
    "Health of the batch-feature Spark job and the freshness of the features it computes.",
    ("mlplatform", "spark", "features"), "now-7d", (
        ("Batch-feature runs per day by outcome", f"sum(increase({SUCCESS}[1d]))", "short", "succeeded"),
        ("Failed batch-feature runs per day", f"sum(increase({FAILURE}[1d]))", "short", "failed"),
        ("Hours since the batch features were last computed", f"(time() - {LAST_SUCCESS}) / 3600", "h",
         "feature age"),
        ("Hours since Feast last materialized", '(time() - max(kube_cronjob_status_last_successful_time'
         '{namespace="feast", cronjob="feast-materialize"})) / 3600', "h", "online store age"),
        ("Running Spark applications", "sum(spark_application_running_count)", "short", "running"),
        operator_up_panel("Spark Operator controller up", OPERATOR_NAMESPACE),
    ))


def rule_groups(runbook_base_url: str) -> list[dict[str, Any]]:
    """PrometheusRule `spec.groups` of the batch-feature job."""
    return job_rule_groups("mlplatform-batch-features", ALERTS, runbook_base_url)
