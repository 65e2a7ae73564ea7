"""What the feature jobs run by a Kubernetes operator share (batch features on the Spark Operator,
infra/workloads/spark.py; streaming features on the Flink Kubernetes Operator, infra/workloads/flink.py):

- the job image, pushed to the model-server repository under a tag of its own;
- the operator's Helm release in its namespace, with the namespace of the jobs it watches;
- monitoring: PodMonitors, a Grafana dashboard built from the contract's panels and the contract's alert rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts.alerts import Dashboard
from infra.workloads.isolation import MONITORING_NAMESPACE
from infra.workloads.kube import helm_release, labels, namespace, pod_monitor
from stacks.context import StackContext


def tagged_image(model_server_image: pulumi.Input[str], suffix: str) -> pulumi.Output[str]:
    """A job image is pushed to the model-server repository with the tag `<model-server tag>-<suffix>` (as the
    ops image is with `-ops`): one repository, one lifecycle policy, one pull permission."""
    return pulumi.Output.from_input(model_server_image).apply(lambda image: f"{image}-{suffix}")


@dataclass(frozen=True)
class Operator:
    """An operator's release and the two namespaces it needs."""

    namespace: k8s.core.v1.Namespace
    jobs_namespace: k8s.core.v1.Namespace
    release: k8s.helm.v3.Release


def operator(parent: pulumi.Resource, ctx: StackContext, *, release: str, chart_key: str, operator_namespace: str,
             jobs_namespace: str, values: Mapping[str, Any], depends_on: Sequence[pulumi.Resource]) -> Operator:
    """The operator's namespace, the namespace of the jobs it watches (its chart binds it there) and its Helm
    release (chart pinned in the BOM), which waits for both namespaces and `depends_on`."""
    operator_ns = namespace(operator_namespace, parent)
    jobs_ns = namespace(jobs_namespace, parent)
    rel = helm_release(release, ctx, chart_key, operator_namespace, values, parent,
                       depends_on=[operator_ns, jobs_ns, *depends_on])
    return Operator(operator_ns, jobs_ns, rel)


def grafana_dashboard(board: Dashboard) -> str:
    """A contract's dashboard as Grafana JSON: time series, two a row."""
    def panel(i: int, title: str, expr: str, unit: str, legend: str) -> dict[str, Any]:
        return {"id": i, "type": "timeseries", "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * ((i - 1) % 2), "y": 8 * ((i - 1) // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": "A", "expr": expr, "legendFormat": legend}]}

    return json.dumps({
        "title": board.title, "uid": board.uid, "schemaVersion": 39, "description": board.description,
        "tags": list(board.tags), "time": {"from": board.time_from, "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": [panel(i + 1, *p) for i, p in enumerate(board.panels)],
    }, indent=2) + "\n"


@dataclass(frozen=True)
class Scrape:
    """A PodMonitor: the pods `selector` picks in `namespace`, scraped on their port named `metrics`."""

    name: str
    namespace: str
    selector: Mapping[str, str]


def monitoring(parent: pulumi.Resource, name: str, ctx: StackContext, *, component: str, scrapes: Sequence[Scrape],
               namespaces: Sequence[k8s.core.v1.Namespace], dashboard: Dashboard,
               rule_groups: Callable[[str], list[dict[str, Any]]], depends_on: Sequence[pulumi.Resource]) -> None:
    """With observability on: the PodMonitors (after `namespaces`), the dashboard's ConfigMap
    `dashboard-<component>` (file `<component>.json`) and the PrometheusRule `mlplatform-<component>` whose groups
    `rule_groups(runbook base URL)` gives; all wait for `depends_on` (the monitoring release's CRDs)."""
    observability = ctx.cfg.workloads.observability
    if not observability.enabled:
        return
    for scrape in scrapes:
        pod_monitor(scrape.name, scrape.namespace, scrape.selector, "metrics", parent,
                    depends_on=[*namespaces, *depends_on])
    after = pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))
    k8s.core.v1.ConfigMap(
        f"{name}-dashboard", metadata={"name": f"dashboard-{component}", "namespace": MONITORING_NAMESPACE,
                                       "labels": {**labels("grafana", "dashboard"), "grafana_dashboard": "1"}},
        data={f"{component}.json": grafana_dashboard(dashboard)}, opts=after)
    k8s.apiextensions.CustomResource(
        f"{name}-alert-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
        metadata={"name": f"mlplatform-{component}", "namespace": MONITORING_NAMESPACE,
                  "labels": labels("alerts", component)},
        spec={"groups": rule_groups(observability.runbook_base_url)}, opts=after)
