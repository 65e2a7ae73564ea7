"""Monitoring: kube-prometheus-stack, the four Grafana dashboards (JSON in infra/workloads/dashboards,
mounted as ConfigMaps through Grafana's sidecar), the alert rules (contracts/alerts.py) the
automatic-rollback rules per enabled model (contracts/rollback.py) with their Alertmanager route, and a
redis_exporter in front of ElastiCache (the online store's hit rate is not in Prometheus otherwise).

The dashboards name no model: the per-model parts come from the model registry
(contracts/model_registry.py). The `model` variable of model-quality.json lists every registered
model, and the Business dashboard starts with the panels the models' specs declare
(`ModelSpec.business_panels`), followed by the model-independent panels of business.json.

Monitor selectors are not restricted to Helm labels (`*SelectorNilUsesHelmValues: false`): the
ServiceMonitors, PodMonitors and PrometheusRules the other workloads declare are picked up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from contracts import model_registry
from contracts.alerts import rule_groups
from contracts.models import DashboardPanel
from contracts.rollback import ACTION, ACTION_LABEL
from contracts.rollback import rule_groups as rollback_rule_groups
from contracts.rollout_job import NAMESPACE as ROLLOUT_NAMESPACE
from contracts.rollout_job import PROMETHEUS_PORT as ROLLOUT_PROMETHEUS_PORT
from infra.aws.interfaces import DataServices
from infra.workloads.args import WorkloadArgs
from infra.workloads.isolation import (
    ANYWHERE,
    MONITORING_NAMESPACE,
    PORT_HTTPS,
    PORT_REDIS,
    CidrIngressRule,
    EgressRule,
    IngressRule,
    NamespacePolicy,
    PeerEgressRule,
    network_policies,
)
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    NODE_ROLE_LABEL,
    PSS_PRIVILEGED,
    helm_release,
    labels,
    namespace,
    pod_security_context,
    service_monitor,
)
from stacks.context import StackContext

NAMESPACE = MONITORING_NAMESPACE
RELEASE = "kube-prometheus-stack"
DASHBOARDS_DIR = Path(__file__).with_name("dashboards")
GRAFANA_ADMIN_SECRET = "grafana-admin"
REDIS_EXPORTER_SECRET = "redis-exporter"
REDIS_EXPORTER_PORT = 9121
# The operator's admission webhook listens here (kube-prometheus-stack prometheusOperator.tls.internalPort).
OPERATOR_WEBHOOK_PORT = 10250
KUBELET_PORT, NODE_EXPORTER_PORT = 10250, 9100
DASHBOARD_LABEL = "grafana_dashboard"
SELECTORS = ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")


PANEL_W, PANEL_H = 12, 8  # Business dashboard: two panels per row


def _model_quality(doc: dict[str, Any]) -> dict[str, Any]:
    for variable in doc["templating"]["list"]:
        if variable["name"] == "model":
            variable["query"] = ",".join(model_registry.names())
    return doc


def _panel(panel: DashboardPanel) -> dict[str, Any]:
    return {"id": 0, "type": "timeseries", "title": panel.title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"}, "gridPos": {},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": panel.expr, "legendFormat": panel.legend}]}


def _business(doc: dict[str, Any]) -> dict[str, Any]:
    declared = [p for spec in model_registry.specs() for p in spec.business_panels]
    panels = [_panel(p) for p in declared] + doc["panels"]
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
        panel["gridPos"] = {"h": PANEL_H, "w": PANEL_W, "x": PANEL_W * (i % 2), "y": PANEL_H * (i // 2)}
    if declared:  # "<summary>, <summary> and serving cost. ...": the models' summaries before the file's own
        own = doc["description"]
        text = ", ".join(p.summary for p in declared) + " and " + own[:1].lower() + own[1:]
        doc["description"] = text[:1].upper() + text[1:]
    doc["panels"] = panels
    return doc


_FROM_REGISTRY = {"model-quality.json": _model_quality, "business.json": _business}


def dashboards() -> dict[str, str]:
    """Dashboard file name -> JSON text (validated: a broken file fails here, not in Grafana), with
    the per-model parts filled in from the model registry."""
    out = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        text = path.read_text()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"dashboard {path.name} is not valid JSON: {exc}") from exc
        fill = _FROM_REGISTRY.get(path.name)
        out[path.name] = text if fill is None else json.dumps(fill(doc), indent=2) + "\n"
    return out


def prometheus_values(ctx: StackContext) -> dict[str, Any]:
    cfg = ctx.cfg.workloads.observability
    spec: dict[str, Any] = {f"{s}SelectorNilUsesHelmValues": False for s in SELECTORS}
    spec.update({
        "retention": cfg.prometheus_retention,
        "replicas": cfg.prometheus_replicas,
        "nodeSelector": {NODE_ROLE_LABEL: "general"},
        "storageSpec": {"volumeClaimTemplate": {"spec": {
            "storageClassName": "gp3-encrypted", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{cfg.prometheus_storage_gib}Gi"}}}}},
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "8Gi"}},
    })
    return {
        "prometheus": {"prometheusSpec": spec},
        "alertmanager": {"alertmanagerSpec": {"replicas": cfg.alertmanager_replicas,
                                              "nodeSelector": {NODE_ROLE_LABEL: "general"}},
                         **({"config": alertmanager_config(ctx)} if _webhooks(ctx) else {})},
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1",
                                       "searchNamespace": "ALL"}},
            "nodeSelector": {NODE_ROLE_LABEL: "general"},
        },
        # EKS manages these control-plane components; they are not scrapeable.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
    }


def _webhooks(ctx: StackContext) -> bool:
    p = ctx.cfg.workloads.pipelines
    return ctx.cfg.governance.auto_rollback.enabled or (p.enabled and p.retrain_on_drift)


def alertmanager_config(ctx: StackContext) -> dict[str, Any]:
    """The chart's default routing (Watchdog to `null`) plus the automatic-rollback route: alerts with
    `action="rollback"` (contracts/rollback.py) go at once, one group per model version, to the
    model-rollback receiver (infra/workloads/governance.py); and the retrain route: `action="retrain"`
    (contracts/pipelines.py) to the pipelines-retrain receiver (infra/workloads/pipelines.py), one group per
    model. Other alerts are routed as before."""
    from contracts.pipelines import ACTION_LABEL as RETRAIN_LABEL
    from contracts.pipelines import RETRAIN_ACTION
    from infra.workloads.governance import receiver_url
    from infra.workloads.pipelines import retrain_receiver_url

    routes: list[dict[str, Any]] = [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}]
    receivers: list[dict[str, Any]] = [{"name": "null"}]
    if ctx.cfg.governance.auto_rollback.enabled:
        routes.append({"receiver": "model-rollback", "matchers": [f'{ACTION_LABEL} = "{ACTION}"'],
                       "group_by": ["alertname", "model", "version"], "group_wait": "0s", "group_interval": "30s",
                       "repeat_interval": "10m"})
        receivers.append({"name": "model-rollback", "webhook_configs": [{"url": receiver_url(), "send_resolved": False,
                                                                         "max_alerts": 0}]})
    p = ctx.cfg.workloads.pipelines
    if p.enabled and p.retrain_on_drift:
        routes.append({"receiver": "model-retrain", "matchers": [f'{RETRAIN_LABEL} = "{RETRAIN_ACTION}"'],
                       "group_by": ["alertname", "model"], "group_wait": "0s", "group_interval": "5m",
                       "repeat_interval": "1h"})
        receivers.append({"name": "model-retrain", "webhook_configs": [{"url": retrain_receiver_url(),
                                                                        "send_resolved": False, "max_alerts": 0}]})
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null", "group_by": ["namespace"], "group_wait": "30s", "group_interval": "5m",
            "repeat_interval": "12h", "routes": routes,
        },
        "receivers": receivers,
    }


@dataclass(frozen=True, kw_only=True)
class ObservabilityArgs(WorkloadArgs):
    """Inputs of `Observability` (settings from `workloads.observability`)."""


class Observability(pulumi.ComponentResource):
    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Observability", name, None, opts)
        ctx, data, vpc_cidr, depends_on = args.ctx, args.data, args.vpc_cidr, args.depends_on
        cfg = ctx.cfg.workloads.observability
        ns = namespace(NAMESPACE, self, pss=PSS_PRIVILEGED)  # node-exporter needs host network and PID
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        password = random.RandomPassword(f"{name}-grafana-password", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin", type="Opaque",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": NAMESPACE, "labels": labels("grafana")},
            string_data={"admin-user": "admin", "admin-password": password.result}, opts=after_ns)
        network_policies(NamespacePolicy(
            NAMESPACE, scraped=False,
            # The API server calls the operator's admission webhook from the control plane's interfaces in the VPC.
            ingress=[CidrIngressRule(vpc_cidr, (OPERATOR_WEBHOOK_PORT,)),
                     # The cluster rollouts' analysis (infra/workloads/rollouts.py) queries Prometheus' HTTP API.
                     *([IngressRule((ROLLOUT_NAMESPACE,), (ROLLOUT_PROMETHEUS_PORT,))]
                       if ctx.cfg.workloads.rollouts.enabled and ctx.cfg.workloads.gitops.enabled else [])],
            # Prometheus scrapes pods of every namespace on their metrics ports and Alertmanager calls the
            # receivers' Services (a namespace peer: their cluster IPs are in no VPC range); the kubelets and
            # node-exporter (host network) are node addresses; Grafana and Alertmanager call out over HTTPS.
            egress=[PeerEgressRule(), EgressRule(ANYWHERE, (PORT_HTTPS, KUBELET_PORT, NODE_EXPORTER_PORT)),
                    EgressRule(vpc_cidr, (PORT_REDIS,))],
        ), self, [ns])
        self.release = helm_release(RELEASE, ctx, "kube-prometheus-stack", NAMESPACE, prometheus_values(ctx), self,
                                    depends_on=[ns, admin, *(depends_on or [])], timeout=900)
        after_stack = pulumi.ResourceOptions(parent=self, depends_on=[ns, self.release])
        self.dashboards = [
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{file.removesuffix('.json')}",
                metadata={"name": f"dashboard-{file.removesuffix('.json')}", "namespace": NAMESPACE,
                          "labels": {**labels("grafana", "dashboard"), DASHBOARD_LABEL: "1"}},
                data={file: text}, opts=after_ns)
            for file, text in dashboards().items()
        ]
        self.rules = k8s.apiextensions.CustomResource(
            f"{name}-alert-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata={"name": "mlplatform-alerts", "namespace": NAMESPACE, "labels": labels("alerts")},
            spec={"groups": rule_groups(cfg.runbook_base_url)}, opts=after_stack)
        enabled = [n for n in ctx.cfg.models.names() if ctx.cfg.models[n].enabled]
        self.rollback_rules = k8s.apiextensions.CustomResource(
            f"{name}-rollback-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata={"name": "mlplatform-rollback", "namespace": NAMESPACE, "labels": labels("alerts", "rollback")},
            spec={"groups": rollback_rule_groups(enabled, cfg.runbook_base_url)}, opts=after_stack)
        self._redis_exporter(name, ctx, data, ns, after_ns)
        self.register_outputs({"dashboards": [d.metadata.name for d in self.dashboards]})

    def _redis_exporter(self, name: str, ctx: StackContext, data: DataServices, ns: k8s.core.v1.Namespace,
                        after_ns: pulumi.ResourceOptions) -> None:
        selector = {"app.kubernetes.io/name": "redis-exporter"}
        secret = k8s.core.v1.Secret(
            f"{name}-redis-exporter-secret", type="Opaque",
            metadata={"name": REDIS_EXPORTER_SECRET, "namespace": NAMESPACE, "labels": labels("redis-exporter")},
            string_data={"password": data.redis.auth_token}, opts=after_ns)
        scheme = "rediss" if data.redis.tls else "redis"
        addr = pulumi.Output.from_input(data.redis.host).apply(lambda h: f"{scheme}://{h}:{data.redis.port}")
        image = ctx.bom.images["redis-exporter"].ref
        k8s.apps.v1.Deployment(
            f"{name}-redis-exporter",
            metadata={"name": "redis-exporter", "namespace": NAMESPACE, "labels": {**labels("redis-exporter"),
                                                                                  **selector}},
            spec={"replicas": 1, "selector": {"matchLabels": selector}, "template": {
                "metadata": {"labels": {**labels("redis-exporter"), **selector}},
                "spec": {
                    "securityContext": pod_security_context(),
                    "automountServiceAccountToken": False,
                    "nodeSelector": {NODE_ROLE_LABEL: "general"},
                    "containers": [{
                        "name": "redis-exporter", "image": image,
                        "env": [{"name": "REDIS_ADDR", "value": addr},
                                {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
                                    "name": REDIS_EXPORTER_SECRET, "key": "password"}}}],
                        "ports": [{"name": "metrics", "containerPort": REDIS_EXPORTER_PORT}],
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"cpu": "200m", "memory": "128Mi"}},
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                        "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"}},
                    }],
                }}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, secret]))
        k8s.core.v1.Service(
            f"{name}-redis-exporter-service",
            metadata={"name": "redis-exporter", "namespace": NAMESPACE, "labels": labels("redis-exporter", "metrics")},
            spec={"selector": selector, "ports": [{"name": "metrics", "port": REDIS_EXPORTER_PORT,
                                                   "targetPort": REDIS_EXPORTER_PORT, "protocol": "TCP"}]},
            opts=after_ns)
        service_monitor("redis-exporter", NAMESPACE, labels("redis-exporter", "metrics"), "metrics", self,
                        depends_on=[ns, self.release])
