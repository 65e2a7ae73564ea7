"""One diagnosis runbook per alert: read-only steps an on-call engineer runs first.

The steps evaluate the alert's own expression (from contracts/alerts.py, the same rule the cluster
and the local Prometheus load) against a Prometheus server, so the runbook shows exactly which
models breach and by how much; then they check that the serving endpoint and each model are ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from contracts import flink as flink_job
from contracts import model_registry
from contracts import spark as spark_job
from contracts.alerts import ALERTS, Alert
from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed


def _fix(ctx: RunContext) -> str:
    return "; start the platform with `mlplat local up`" if ctx.env == "local" else ""


def _prometheus(ctx: RunContext) -> str:
    url = ctx.params.get("prometheus_url") or ctx.prometheus_url
    if not url:
        raise StepFailed("no Prometheus: pass --param prometheus_url=URL (the cluster's, or the local one)")
    return url.rstrip("/")


def _evaluate(alert: Alert) -> Any:
    def read(ctx: RunContext) -> dict[str, Any]:
        try:
            response = httpx.get(f"{_prometheus(ctx)}/api/v1/query", params={"query": alert.expr}, timeout=10)
        except httpx.HTTPError as exc:
            raise StepFailed(f"Prometheus at {_prometheus(ctx)} is unreachable: {exc}{_fix(ctx)}") from None
        body = response.json()
        if body.get("status") != "success":
            raise StepFailed(f"Prometheus rejected the query: {body.get('error')}")
        breaching = [
            {**{k: v for k, v in r["metric"].items() if k != "__name__"}, "value": float(r["value"][1])}
            for r in body["data"]["result"]
        ]
        ctx.state["breaching"] = breaching
        verdict = "FIRING CONDITION MET" if breaching else "condition not met now"
        return {"alert": alert.name, "verdict": verdict, "breaching": breaching}

    return read


def _readiness(ctx: RunContext) -> dict[str, Any]:
    if not ctx.serving_url:
        raise StepFailed("no inference endpoint: pass --serving-url (the local platform's is set for --env local)")
    base = ctx.serving_url.rstrip("/")
    try:
        server = httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError as exc:
        raise StepFailed(f"inference endpoint {base} is unreachable: {exc}{_fix(ctx)}") from None
    models = {m: httpx.get(f"{base}/v2/models/{m}/ready", timeout=5).status_code == 200
              for m in model_registry.names()}
    return {"server_ready": server, "models_ready": models}


def _check_ready(ctx: RunContext, result: dict[str, Any]) -> None:
    down = [m for m, ok in result["models_ready"].items() if not ok]
    if not result["server_ready"] or down:
        raise StepFailed(f"serving is not healthy: server_ready={result['server_ready']}, not ready: {down}")


def diagnosis_runbook(alert: Alert, serving: bool = True) -> Runbook:
    """`serving`: the alert concerns inference, so the runbook also checks the endpoint and every model."""
    steps = [Step(f"evaluate {alert.name} now", lambda ctx: _prometheus(ctx), precondition=lambda ctx: None,
                  plan=lambda ctx: [], action=_evaluate(alert), verify=lambda ctx, r: None,
                  rollback="nothing changed (read-only)", read_only=True)]
    if serving:
        steps.append(Step("check the inference endpoint and every model are ready", lambda ctx: str(ctx.serving_url),
                          precondition=lambda ctx: None, plan=lambda ctx: [], action=_readiness,
                          verify=_check_ready, rollback="nothing changed (read-only)", read_only=True))
    return Runbook(name=Path(alert.runbook).stem, title=f"{alert.name} ({alert.severity})", steps=steps)


# The streaming and batch feature jobs' alerts (contracts/flink.py, contracts/spark.py) are about those jobs,
# not inference.
ALERT_RUNBOOKS = [diagnosis_runbook(a) for a in ALERTS] + [diagnosis_runbook(a, serving=False)
                                                           for a in (*flink_job.ALERTS, *spark_job.ALERTS)]
