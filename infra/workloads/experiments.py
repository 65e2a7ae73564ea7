"""Bandit controllers on the cluster: one Deployment per model with `models.<name>.bandit.enabled`.

Each runs `python -m ml.delivery.experiments.cluster bandit <model>` in the model-server image (ml/ is in
it), in namespace `ml-training`, as its own service account `experiment-controller` with no cloud
identity. Its only rights: get and patch Seldon `experiments` in the Seldon namespace (Role + RoleBinding
there), so it can change a traffic split and nothing else: not a Model, not another namespace. It reads
outcomes from the feedback endpoint: the platform's own in-cluster Service (infra/workloads/feedback.py)
unless `bandit.feedbackUrl` names another; a pod-scoped NetworkPolicy allows that port (to the `delivery`
namespace only, for the platform's own). With the `ctr` reward, requests count as impressions only once
`bandit.attributionWindowSeconds` have passed since they were served (their clicks may still come). It
serves its weights and posteriors on port 9102 (a PodMonitor has Prometheus scrape them) and keeps its
state in an emptyDir: the posteriors are recomputed from the feedback counts since `bandit.startedAt`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts.cluster import FEEDBACK_SERVER, FEEDBACK_URL, SELDON_NAMESPACE
from infra.workloads.governance import NAMESPACE
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    NODE_ROLE_LABEL,
    TMP_MOUNT,
    labels,
    pod_monitor,
    pod_security_context,
    tmp_volume,
)
from stacks.context import StackContext
from stacks.schema import BanditConfig

CONTROLLER = "experiment-controller"
METRICS_PORT = 9102
SELECTOR = {"app.kubernetes.io/name": CONTROLLER}
EXPERIMENT_RULES = [{"apiGroups": ["mlops.seldon.io"], "resources": ["experiments"], "verbs": ["get", "patch"]}]


def bandit_models(ctx: StackContext) -> dict[str, BanditConfig]:
    return {n: ctx.cfg.models[n].bandit for n in ctx.cfg.models.names()
            if ctx.cfg.models[n].enabled and ctx.cfg.models[n].bandit.enabled}


def feedback_url(cfg: BanditConfig) -> str:
    """The bandit's feedback endpoint: its own setting, else the platform's in-cluster Service."""
    return str(cfg.feedback_url) if cfg.feedback_url else FEEDBACK_URL


def feedback_port(url: str) -> int:
    parsed = urllib.parse.urlsplit(url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def controller_args(model: str, cfg: BanditConfig) -> list[str]:
    args = ["python", "-m", "ml.delivery.experiments.cluster", "bandit", model, "--feedback-url",
            feedback_url(cfg), "--namespace", SELDON_NAMESPACE, "--metric", cfg.metric, "--floor", str(cfg.floor),
            "--interval", f"{cfg.interval_seconds}s", "--attribution-window", f"{cfg.attribution_window_seconds}s",
            "--metrics-port", str(METRICS_PORT), "--state-dir", "/tmp/experiments"]
    return args + (["--since", str(cfg.started_at)] if cfg.started_at else [])


def deployment_spec(model: str, cfg: BanditConfig, image: pulumi.Input[str]) -> dict[str, Any]:
    selector = {**SELECTOR, "mlplat.io/model": model}
    return {
        "replicas": 1, "selector": {"matchLabels": selector},
        "strategy": {"type": "Recreate"},  # one controller per Experiment: two would fight over the weights
        "template": {
            "metadata": {"labels": {**labels("experiments", CONTROLLER), **selector}},
            "spec": {
                "serviceAccountName": CONTROLLER,
                "automountServiceAccountToken": True,  # it patches the Seldon Experiment
                "securityContext": pod_security_context(),
                "nodeSelector": {NODE_ROLE_LABEL: "general"},
                "containers": [{
                    "name": "bandit", "image": image, "command": controller_args(model, cfg),
                    "env": [{"name": "HOME", "value": "/tmp"}],
                    "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                    "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}},
                    "resources": {"requests": {"cpu": "50m", "memory": "256Mi"},
                                  "limits": {"cpu": "500m", "memory": "512Mi"}},
                    "securityContext": CONTAINER_SECURITY_CONTEXT,
                    "volumeMounts": [TMP_MOUNT],
                }],
                "volumes": [tmp_volume("256Mi")],
            },
        },
    }


def egress_policy_spec(urls: list[str]) -> dict[str, Any]:
    """The controllers' own allowance on top of the namespace's: the feedback endpoints' ports, in the `delivery`
    namespace for the platform's own endpoint, anywhere in the cluster for one a stack names."""
    rules = []
    own = sorted({feedback_port(u) for u in urls if u == FEEDBACK_URL})
    other = sorted({feedback_port(u) for u in urls if u != FEEDBACK_URL})
    if own:
        rules.append({"to": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": FEEDBACK_SERVER.namespace}}}],
            "ports": [{"protocol": "TCP", "port": p} for p in own]})
    if other:
        rules.append({"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": p} for p in other]})
    return {"podSelector": {"matchLabels": SELECTOR}, "policyTypes": ["Egress"], "egress": rules}


@dataclass(frozen=True, kw_only=True)
class ExperimentControllersArgs:
    """Inputs of `ExperimentControllers` (settings from `models.<name>.bandit`)."""

    ctx: StackContext
    image: pulumi.Input[str]
    """The model-server image, which carries the controllers (ml/delivery/experiments/cluster.py)."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """The governance namespace and the monitoring stack (the PodMonitor's CRD)."""


class ExperimentControllers(pulumi.ComponentResource):
    """Service account, Experiment-patching Role, one bandit Deployment per enabled model, PodMonitor."""

    def __init__(self, name: str, args: ExperimentControllersArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:ExperimentControllers", name, None, opts)
        ctx, image, depends_on = args.ctx, args.image, args.depends_on
        bandits = bandit_models(ctx)
        child = pulumi.ResourceOptions(parent=self, depends_on=depends_on)
        meta = {"namespace": NAMESPACE, "labels": labels("experiments", CONTROLLER)}
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={"name": CONTROLLER, **meta},
                                        automount_service_account_token=False, opts=child)
        role = k8s.rbac.v1.Role(
            f"{name}-role", metadata={"name": CONTROLLER, "namespace": SELDON_NAMESPACE,
                                      "labels": labels("experiments", CONTROLLER)},
            rules=EXPERIMENT_RULES, opts=child)
        k8s.rbac.v1.RoleBinding(
            f"{name}-binding", metadata={"name": CONTROLLER, "namespace": SELDON_NAMESPACE,
                                         "labels": labels("experiments", CONTROLLER)},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER},
            subjects=[{"kind": "ServiceAccount", "namespace": NAMESPACE, "name": CONTROLLER}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends_on, role, sa]))
        k8s.networking.v1.NetworkPolicy(
            f"{name}-feedback-egress", metadata={"name": f"{CONTROLLER}-feedback", **meta},
            spec=egress_policy_spec([feedback_url(b) for b in bandits.values()]), opts=child)
        for model, cfg in bandits.items():
            k8s.apps.v1.Deployment(
                f"{name}-{model}", metadata={"name": f"{model}-bandit", **meta},
                spec=deployment_spec(model, cfg, image),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends_on, sa]))
        pod_monitor(CONTROLLER, NAMESPACE, SELECTOR, "metrics", self, depends_on=depends_on)
        self.register_outputs({})
