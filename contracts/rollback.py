"""Automatic-rollback triggers: one Prometheus rule per trigger and registered model.

A new version is rolled back without a person when, per registered model and registry version
(labels `model`, `version` of the runtimes' metrics, ml/serving/metrics.py):

- its error rate (5xx share of its requests) is above 5 %,
- its p99 inference latency is above 10 ms, or
- its F1 on labelled outcomes is more than 5 % below the best other version's F1 over the same window
  (the canary against the champion it would replace; outcomes from the stream ingestor).

The rules carry `action: rollback`; Alertmanager routes those to the model-rollback receiver
(runbooks/autorollback.py), which acts only when the firing version is the candidate, i.e. the
version the Seldon Experiment gives traffic to as challenger, or the champion that replaced an older
one, and then runs the model-rollback runbook's steps (audited). The cluster's PrometheusRule and the
local Prometheus load the same groups; the local test shortens the windows (`Timing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_RATE_MAX = 0.05
P99_MAX_SECONDS = 0.010
F1_DROP_MAX = 0.05  # relative: F1 < (1 - 0.05) x the best other version's F1
MIN_LABELLED = 50  # labelled outcomes of a version in the window before its F1 counts

REQUESTS = "mlplat_model_requests_total"
REQUEST_SECONDS = "mlplat_model_request_seconds"
OUTCOMES = "mlplat_ingestor_labelled_outcomes_total"
F1_RECORD = "mlplat:model_f1"

ACTION_LABEL, ACTION = "action", "rollback"
RUNBOOK = "model-rollback.md"


@dataclass(frozen=True)
class Timing:
    """Windows and `for` durations of the rules (cluster defaults; the local e2e test shortens them)."""

    rate_window: str = "2m"  # error rate and p99
    error_for: str = "1m"
    latency_for: str = "5m"
    f1_window: str = "1h"
    f1_for: str = "10m"
    interval: str = "30s"


@dataclass(frozen=True)
class Trigger:
    name: str  # alert name
    kind: str  # error_rate | latency_p99 | f1_drop
    summary: str


TRIGGERS = (
    Trigger("MLPlatRollbackErrorRate", "error_rate",
            "{{ $labels.model }} v{{ $labels.version }} answers {{ $value | humanizePercentage }} of requests with an "
            "error (> 5 %): automatic rollback"),
    Trigger("MLPlatRollbackLatencyP99", "latency_p99",
            "p99 latency of {{ $labels.model }} v{{ $labels.version }} is {{ $value | humanizeDuration }} (> 10 ms): "
            "automatic rollback"),
    Trigger("MLPlatRollbackF1Drop", "f1_drop",
            "F1 of {{ $labels.model }} v{{ $labels.version }} on labelled outcomes is {{ $value }} (> 5 % below the "
            "previous version): automatic rollback"),
)


def _f1_expr(model: str, window: str) -> str:
    sel = f'model="{model}"'
    tp = f'sum by (model, version) (increase({OUTCOMES}{{{sel},predicted="1",actual="1"}}[{window}]))'
    every = f"sum by (model, version) (increase({OUTCOMES}{{{sel}}}[{window}]))"
    pred = f'sum by (model, version) (increase({OUTCOMES}{{{sel},predicted="1"}}[{window}]))'
    actual = f'sum by (model, version) (increase({OUTCOMES}{{{sel},actual="1"}}[{window}]))'
    zero = f"0 * {every}"
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted positives + actual positives); absent series count 0.
    return (f"(2 * ({tp} or {zero})) / (({pred} or {zero}) + ({actual} or {zero}))"
            f" and on (model, version) ({every} >= {MIN_LABELLED})")


def value_expr(trigger: Trigger, model: str, timing: Timing) -> str:
    """The measured value per (model, version) that `expr` compares (the rollout analysis reports it)."""
    sel = f'model="{model}"'
    w = timing.rate_window
    if trigger.kind == "error_rate":
        return (f'(sum by (model, version) (rate({REQUESTS}{{{sel},outcome="error"}}[{w}])) or 0 * '
                f'sum by (model, version) (rate({REQUESTS}{{{sel}}}[{w}]))) '
                f"/ sum by (model, version) (rate({REQUESTS}{{{sel}}}[{w}]))")
    if trigger.kind == "latency_p99":
        return (f"histogram_quantile(0.99, sum by (le, model, version) "
                f"(rate({REQUEST_SECONDS}_bucket{{{sel}}}[{w}])))")
    if trigger.kind == "f1_drop":
        return f"{F1_RECORD}{{{sel}}}"
    raise ValueError(f"unknown trigger kind {trigger.kind!r}")


def expr(trigger: Trigger, model: str, timing: Timing) -> str:
    sel = f'model="{model}"'
    w = timing.rate_window
    if trigger.kind == "error_rate":
        return (f'sum by (model, version) (rate({REQUESTS}{{{sel},outcome="error"}}[{w}])) '
                f"/ sum by (model, version) (rate({REQUESTS}{{{sel}}}[{w}])) > {ERROR_RATE_MAX}")
    if trigger.kind == "latency_p99":
        return (f"histogram_quantile(0.99, sum by (le, model, version) "
                f"(rate({REQUEST_SECONDS}_bucket{{{sel}}}[{w}]))) > {P99_MAX_SECONDS}")
    if trigger.kind == "f1_drop":
        return (f'{F1_RECORD}{{{sel}}} < on (model) group_left () ({1 - F1_DROP_MAX:.2f} * '
                f'max by (model) ({F1_RECORD}{{{sel}}}))')
    raise ValueError(f"unknown trigger kind {trigger.kind!r}")


def _for(trigger: Trigger, timing: Timing) -> str:
    return {"error_rate": timing.error_for, "latency_p99": timing.latency_for, "f1_drop": timing.f1_for}[trigger.kind]


def rule_groups(models: tuple[str, ...] | list[str], runbook_base_url: str,
                timing: Timing | None = None) -> list[dict[str, Any]]:
    """PrometheusRule `spec.groups`: per model, the F1 recording rule and the three rollback alerts."""
    timing = timing or Timing()
    groups = []
    for model in models:
        # `labels`: one recording rule per model under the same name (promtool lints unlabelled duplicates).
        rules: list[dict[str, Any]] = [{"record": F1_RECORD, "expr": _f1_expr(model, timing.f1_window),
                                        "labels": {"model": model}}]
        for trigger in TRIGGERS:
            rules.append({
                "alert": trigger.name, "expr": expr(trigger, model, timing), "for": _for(trigger, timing),
                "labels": {"severity": "critical", "platform": "mlplatform", ACTION_LABEL: ACTION,
                           "trigger": trigger.kind, "model": model},
                "annotations": {"summary": trigger.summary, "runbook_url": f"{runbook_base_url}runbooks/{RUNBOOK}"},
            })
        groups.append({"name": f"mlplatform-rollback-{model}", "interval": timing.interval, "rules": rules})
    return groups
