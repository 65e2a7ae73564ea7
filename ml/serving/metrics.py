"""Prometheus metrics the reference-model runtimes export beyond MLServer's own.

`METRICS` is the contract with the dashboards and alert rules (ml/METRICS.md lists the
same names; a test keeps the two in sync). The `model` label is the MLServer model name, so a
champion and a challenger served side by side stay apart.

Metrics are created lazily (first runtime load), not at import: with `parallel_workers > 0`
MLServer switches prometheus_client to multi-process mode only after import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

PREDICTION = "mlplat_model_prediction"
PREDICTED_CLASS = "mlplat_model_predicted_class_total"
DEGRADED = "mlplat_model_degraded_responses_total"
INVALID = "mlplat_model_invalid_requests_total"
DRIFT_PSI = "mlplat_model_drift_psi"
FEATURE_FETCH = "mlplat_model_online_feature_fetch_seconds"
# Service levels per registry version (contracts/rollback.py): `model` is the registered model name and
# `version` the registry version the runtime loaded, so a canary's rollback triggers see it alone.
REQUESTS = "mlplat_model_requests_total"
REQUEST_SECONDS = "mlplat_model_request_seconds"
# The prediction cache (ml/serving/prediction_cache.py): hit rate and the latency it saves.
CACHE_REQUESTS = "mlplat_model_cache_requests_total"
CACHE_LOOKUP = "mlplat_model_cache_lookup_seconds"
CACHE_SAVED = "mlplat_model_cache_saved_seconds_total"

# name -> (type, labels, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    PREDICTION: ("histogram", ("model",), "Distribution of the model's output score (e.g. a class "
                 "probability, a confidence or the top score of a ranking)."),
    PREDICTED_CLASS: ("counter", ("model", "cls"), "Predictions per predicted class (e.g. a decision or "
                      "a label)."),
    DEGRADED: ("counter", ("model", "reason"), "Responses served with fallback inputs (e.g. the online "
               "feature store failed or timed out) instead of failing."),
    INVALID: ("counter", ("model", "reason"), "Requests refused with a 4xx because the input was invalid."),
    DRIFT_PSI: ("gauge", ("model", "feature"), "Population Stability Index of a sliding window of live "
                "inputs/scores against the training reference distribution."),
    FEATURE_FETCH: ("histogram", ("model",), "Latency of the online feature fetch (seconds)."),
    REQUESTS: ("counter", ("model", "version", "outcome"), "Inference requests per registered model and registry "
               "version, by outcome: ok, invalid (4xx: refused input) or error (5xx)."),
    REQUEST_SECONDS: ("histogram", ("model", "version"), "Inference latency in the runtime (seconds) per registered "
                      "model and registry version."),
    CACHE_REQUESTS: ("counter", ("model", "result"), "Prediction-cache lookups by result: hit, miss, error (Redis "
                     "failed or timed out: answered by the model) or skipped (backing off after an error)."),
    CACHE_LOOKUP: ("histogram", ("model",), "Latency of a prediction-cache lookup (seconds)."),
    CACHE_SAVED: ("counter", ("model",), "Model compute time saved by cache hits (seconds): per hit, the smoothed "
                  "compute time of recent misses minus the lookup time."),
}
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)

SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
FETCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)


def _get_or_create(name: str, factory: type, **kwargs: object) -> object:
    # Counters register as `<name>` minus `_total`; look up both spellings.
    names = REGISTRY._names_to_collectors
    for key in (name, name.removesuffix("_total")):
        if key in names:
            return names[key]
    return factory(name, METRICS[name][2], list(METRICS[name][1]), **kwargs)


@dataclass
class RuntimeMetrics:
    """The metric children of one served model."""

    model: str

    def __post_init__(self) -> None:
        self._prediction = _get_or_create(PREDICTION, Histogram, buckets=SCORE_BUCKETS)
        self._cls = _get_or_create(PREDICTED_CLASS, Counter)
        self._degraded = _get_or_create(DEGRADED, Counter)
        self._invalid = _get_or_create(INVALID, Counter)
        self._psi = _get_or_create(DRIFT_PSI, Gauge, multiprocess_mode="mostrecent")
        self._fetch = _get_or_create(FEATURE_FETCH, Histogram, buckets=FETCH_BUCKETS)
        self.prediction = self._prediction.labels(model=self.model)
        self.fetch_seconds = self._fetch.labels(model=self.model)
        self._children: dict[tuple[object, ...], object] = {}

    def _child(self, metric: object, **labels: str) -> object:
        # labels() takes a lock and builds a key on every call; the label sets are few: keep them.
        key = (id(metric), *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(model=self.model, **labels)
        return child

    def predicted(self, cls: str, n: int = 1) -> None:
        self._child(self._cls, cls=cls).inc(n)

    def degraded(self, reason: str, n: int = 1) -> None:
        self._child(self._degraded, reason=reason).inc(n)

    def invalid(self, reason: str) -> None:
        self._child(self._invalid, reason=reason).inc()

    def drift(self, values: dict[str, float]) -> None:
        for feature, value in values.items():
            self._child(self._psi, feature=feature).set(value)


class VersionMetrics:
    """Requests and latency of one loaded registry version (the rollback triggers' inputs)."""

    def __init__(self, model: str, version: str) -> None:
        requests = _get_or_create(REQUESTS, Counter)
        self.ok = requests.labels(model=model, version=version, outcome="ok")
        self.invalid = requests.labels(model=model, version=version, outcome="invalid")
        self.error = requests.labels(model=model, version=version, outcome="error")
        self.seconds = _get_or_create(REQUEST_SECONDS, Histogram, buckets=LATENCY_BUCKETS).labels(
            model=model, version=version)


class CacheMetrics:
    """The prediction cache's metric children of one served model."""

    def __init__(self, model: str) -> None:
        requests = _get_or_create(CACHE_REQUESTS, Counter)
        self._results = {r: requests.labels(model=model, result=r) for r in ("hit", "miss", "error", "skipped")}
        self.lookup_seconds = _get_or_create(CACHE_LOOKUP, Histogram, buckets=FETCH_BUCKETS).labels(model=model)
        self.saved_seconds = _get_or_create(CACHE_SAVED, Counter).labels(model=model)

    def result(self, result: str) -> None:
        self._results[result].inc()
