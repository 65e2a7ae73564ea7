"""Every metric the dashboards and alert rules query, with the workload that exports it.

A test parses each PromQL expression in infra/workloads/dashboards/*.json and contracts/alerts.py and
fails on a metric name not listed here; another (ML environment) checks the model and ingestor
names against the modules that define them (ml/serving/metrics.py,
the stream ingestor a model declares in its spec). Histograms are listed by base name (their `_bucket`, `_sum` and
`_count` series are implied); counters with their `_total` suffix.
"""

from __future__ import annotations

import re

# metric -> (type, exporter)
METRICS: dict[str, tuple[str, str]] = {
    # MLServer (model-server image, Seldon `mlserver` Server; port 8082)
    "rest_server_requests_total": ("counter", "MLServer REST (starlette-exporter; labels path, status_code)"),
    "rest_server_request_duration_seconds": ("histogram", "MLServer REST request latency (label path)"),
    "model_infer_request_success_total": ("counter", "MLServer data plane (labels model, version)"),
    "model_infer_request_failure_total": ("counter", "MLServer data plane (labels model, version)"),
    # Seldon Core 2 agent (server pods; port 9006)
    "seldon_model_infer_api_seconds": ("histogram", "Seldon agent (labels server, method_type, code)"),
    "seldon_model_infer_total": ("counter", "Seldon agent (labels server, model, code)"),
    "seldon_loaded_model_gauge": ("gauge", "Seldon agent"),
    # Reference-model runtimes (ml/serving/metrics.py)
    "mlplat_model_prediction": ("histogram", "model runtimes: output score distribution"),
    "mlplat_model_predicted_class_total": ("counter", "model runtimes: predictions per class"),
    "mlplat_model_degraded_responses_total": ("counter", "model runtimes: fallback responses"),
    "mlplat_model_invalid_requests_total": ("counter", "model runtimes: refused requests"),
    "mlplat_model_drift_psi": ("gauge", "model runtimes: PSI of live vs training distribution"),
    "mlplat_model_online_feature_fetch_seconds": ("histogram", "model runtimes: online feature fetch"),
    "mlplat_model_requests_total": ("counter", "model runtimes: requests per registry version and outcome"),
    "mlplat_model_request_seconds": ("histogram", "model runtimes: latency per registry version"),
    "mlplat_model_cache_requests_total": ("counter", "model runtimes: prediction-cache lookups by result"),
    "mlplat_model_cache_lookup_seconds": ("histogram", "model runtimes: prediction-cache lookup latency"),
    "mlplat_model_cache_saved_seconds_total": ("counter", "model runtimes: compute time saved by cache hits"),
    # Streaming ingestor (the module named by the `ModelSpec.stream` of a registered model)
    "mlplat_ingestor_events_total": ("counter", "feast-stream-ingestor"),
    "mlplat_ingestor_push_seconds": ("histogram", "feast-stream-ingestor"),
    "mlplat_ingestor_event_lag_seconds": ("gauge", "feast-stream-ingestor"),
    "mlplat_ingestor_push_failures_total": ("counter", "feast-stream-ingestor"),
    "mlplat_ingestor_labelled_transactions_total": ("counter", "feast-stream-ingestor"),
    "mlplat_ingestor_labelled_outcomes_total": ("counter", "feast-stream-ingestor (per model version: rollback F1)"),
    # Feast feature server (`feast serve --metrics`, port 8000)
    "feast_feature_server_request_latency_seconds": ("histogram", "Feast feature server"),
    "feast_feature_server_request_total": ("counter", "Feast feature server"),
    # ElastiCache Redis through redis_exporter (infra/workloads/observability.py)
    "redis_keyspace_hits_total": ("counter", "redis-exporter"),
    "redis_keyspace_misses_total": ("counter", "redis-exporter"),
    "redis_up": ("gauge", "redis-exporter"),
    # kube-prometheus-stack: kubelet/cAdvisor and kube-state-metrics
    "container_cpu_usage_seconds_total": ("counter", "kubelet cAdvisor"),
    "container_memory_working_set_bytes": ("gauge", "kubelet cAdvisor"),
    "kube_pod_status_phase": ("gauge", "kube-state-metrics"),
    "kube_pod_container_status_restarts_total": ("counter", "kube-state-metrics"),
    "kube_pod_container_resource_requests": ("gauge", "kube-state-metrics (resource=cpu|memory|nvidia_com_gpu)"),
    # The streaming-features Flink job (Prometheus reporter of its JobManager / TaskManagers): contracts/flink.py
    "flink_jobmanager_job_uptime": ("gauge", "Flink JobManager (streaming-features)"),
    "flink_jobmanager_job_numRestarts": ("gauge", "Flink JobManager (streaming-features)"),
    "flink_jobmanager_job_numberOfFailedCheckpoints": ("gauge", "Flink JobManager (streaming-features)"),
    "flink_taskmanager_job_task_operator_lateTransactions": ("counter", "Flink TaskManager: the job's operator"),
    "flink_taskmanager_job_task_operator_invalidTransactions": ("counter", "Flink TaskManager: the job's operator"),
    "flink_taskmanager_job_task_operator_featureRowsWritten": ("counter", "Flink TaskManager: the job's operator"),
    "flink_taskmanager_job_task_operator_newestEventTimeMs": ("gauge", "Flink TaskManager: the job's operator"),
    "kube_cronjob_status_last_successful_time": ("gauge", "kube-state-metrics (the feast-materialize CronJob)"),
    # Spark Operator controller (kubeflow/spark-operator, port 8080; label app_type): contracts/spark.py
    "spark_application_success_count": ("counter", "spark-operator controller"),
    "spark_application_failure_count": ("counter", "spark-operator controller"),
    "spark_application_running_count": ("gauge", "spark-operator controller"),
    "up": ("gauge", "Prometheus (every scrape target)"),
    # Argo CD application controller (argo-cd chart metrics Service, port 8082; infra/workloads/gitops.py)
    "argocd_app_info": ("gauge", "Argo CD controller (labels name, project, sync_status, health_status)"),
    "argocd_app_sync_total": ("counter", "Argo CD controller (labels name, project, phase)"),
}

_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "count_values",
    "inf", "nan", "le",
}


def known(metric: str) -> bool:
    if metric in METRICS:
        return True
    return any(metric == base + s for base, (kind, _) in METRICS.items() for s in _SUFFIXES.get(kind, ()))


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (labels, functions, keywords and durations removed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range / subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+|\$\{[^}]*\}", "", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or token.lower() in _KEYWORDS:
            continue
        if text[max(0, m.start() - 1)].isdigit():  # unit of a number such as 5m
            continue
        names.add(token)
    return names
