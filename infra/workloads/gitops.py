"""Argo CD (argo-helm `argo-cd`, pinned in the BOM) and the ApplicationSet that delivers the model deployments.

One owner per object (docs/DELIVERY.md): Pulumi owns the platform — Argo CD itself, the Seldon runtime and
Servers, the storage secrets, the Feast apply Job; Argo CD owns the model deployments — the Seldon Models
and Experiments of contracts/deploy_tree.py, which live in git at `<path>/<environment>/<model>/` of the
repository in `workloads.gitops` and which nothing else applies.

What this component declares:
- the `argocd` namespace (restricted Pod Security), default-deny NetworkPolicies with explicit allows
  (DNS, the API server and git over HTTPS/SSH, scrapes from `monitoring`);
- the `argo-cd` release: admin user off, no Dex, no notifications controller, server only as a ClusterIP
  Service (reach it with `kubectl port-forward`), the chart's ClusterRoles off and the in-cluster cluster
  restricted to the `seldon` namespace (namespaced mode: the controller lists and watches only there, and
  only Seldon Models and Experiments: `resource.inclusions`), health checks of Seldon's Model, Experiment
  and Pipeline in Lua, metrics Services, the Redis password from a Secret of ours (no secret-init Job with
  rights to write Secrets);
- Roles in `seldon` for the controller (apply and prune Models and Experiments) and the server (read them);
- the AppProject `models` (source: the deploy repository; destination: `seldon`; kinds: Model, Experiment;
  no cluster-scoped kinds) and the ApplicationSet `models`: one Application per enabled model in this
  stack's environment, automated sync with prune and self-heal;
- ServiceMonitors and a PrometheusRule (an Application out of sync or degraded).

Progressive delivery on the cluster: a rollout step is a patch of the Experiment's candidate weights made by
the rollout controller, not a commit, and every Application ignores those weights (`ignoreDifferences` +
`RespectIgnoreDifferences=true`): git history does not get one commit per 10 % step, a step does not wait
for a sync cycle, and self-heal does not undo a step. The final promotion (a new champion version) IS a git
change: the champion Model's `registry-version` in the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from contracts import deploy_tree
from contracts.cluster import NODE_ROLE_LABEL, SELDON_NAMESPACE
from infra.workloads.isolation import ANYWHERE, PORT_HTTPS, EgressRule, NamespacePolicy, network_policies
from infra.workloads.kube import helm_release, labels, namespace, service_monitor
from stacks.context import StackContext
from stacks.delivery import model_releases
from stacks.schema import GitOpsConfig

NAMESPACE = "argocd"
RELEASE = "argocd"  # the chart's names: argocd-server, argocd-application-controller, ...
PROJECT = "models"
APPLICATION_SET = "models"
IN_CLUSTER = "https://kubernetes.default.svc"
PORT_SSH = 22
REDIS_SECRET = "argocd-redis"  # the chart's Redis and its clients read key `auth` from this Secret
CONTROLLER_SA = f"{RELEASE}-application-controller"
SERVER_SA = f"{RELEASE}-server"
# Seldon's resources: plural names for RBAC, and what the health checks read.
SELDON_PLURALS = {"Model": "models", "Experiment": "experiments", "Pipeline": "pipelines"}
# The readiness condition of each Seldon kind (its CRD's printer columns, seldon-core-v2-crds 2.10.2): Ready is
# the summary condition of all three.
READY_CONDITION = "Ready"
# What a rollout controller changes on a live Experiment and Argo CD leaves alone.
IGNORED_EXPERIMENT_FIELDS = (".spec.candidates[].weight",)
SYNC_OPTIONS = ("RespectIgnoreDifferences=true", "PruneLast=true")
# Metrics Services of the chart (`<component>.metrics.enabled`): component -> the Service's
# `app.kubernetes.io/name` (templates/argocd-*/metrics.yaml; container and Service ports are equal).
METRICS = {"application-controller": f"{RELEASE}-metrics", "server": f"{RELEASE}-server-metrics",
           "repo-server": f"{RELEASE}-repo-server-metrics", "applicationset-controller": f"{RELEASE}-metrics"}
VALUES_COMPONENT = {"application-controller": "controller", "server": "server", "repo-server": "repoServer",
                    "applicationset-controller": "applicationSet"}


def seldon_health_lua(kind: str) -> str:
    """Argo CD health check of a Seldon resource (resource.customizations.health.<group>_<Kind>), in Lua.

    Progressing until Seldon has reported on the current generation; then the `Ready` condition decides:
    True -> Healthy; False with a failure in its reason or message -> Degraded; otherwise Progressing (a
    Model that is still loading reports Ready False too)."""
    return f'''-- Seldon Core 2 {kind}: status.conditions[type={READY_CONDITION}] and status.observedGeneration
local hs = {{status = "Progressing", message = "waiting for Seldon to report on the {kind}"}}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Seldon has not yet reconciled generation " .. tostring(obj.metadata.generation)
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "{READY_CONDITION}" then
    local text = (condition.reason or "") .. " " .. (condition.message or "")
    if condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message or "ready"
    elseif condition.status == "False" and string.find(string.lower(text), "fail") ~= nil then
      hs.status = "Degraded"
      hs.message = text
    elseif text ~= " " then
      hs.message = text
    end
    return hs
  end
end
return hs
'''


def resource_inclusions() -> str:
    """The only kinds the controller watches: what the deploy tree holds."""
    kinds = ", ".join(deploy_tree.KINDS)
    return f"- apiGroups: [{deploy_tree.SELDON_GROUP}]\n  kinds: [{kinds}]\n  clusters: [\"{IN_CLUSTER}\"]\n"


def argocd_values(ctx: StackContext) -> dict[str, Any]:
    health = {f"resource.customizations.health.{deploy_tree.SELDON_GROUP}_{kind}": seldon_health_lua(kind)
              for kind in SELDON_PLURALS}
    component_resources = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    values: dict[str, Any] = {
        # Our NetworkPolicies (default deny, explicit allows), as in every namespace of the platform.
        "global": {"nodeSelector": {NODE_ROLE_LABEL: "general"}, "networkPolicy": {"create": False}},
        # No ClusterRoles: the controller and the server get Roles in `seldon` from the program.
        "createClusterRoles": False,
        "configs": {
            "cm": {"admin.enabled": False, "resource.inclusions": resource_inclusions(), **health},
            # The in-cluster cluster in namespaced mode: Argo CD may only list, watch and apply in `seldon`.
            "clusterCredentials": {"in-cluster": {
                "server": IN_CLUSTER, "namespaces": SELDON_NAMESPACE,
                "config": {"tlsClientConfig": {"insecure": False}}}},
        },
        "dex": {"enabled": False},
        "notifications": {"enabled": False},
        "redisSecretInit": {"enabled": False},
        "redis": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"}}},
    }
    for component in METRICS:
        values[VALUES_COMPONENT[component]] = {"resources": component_resources, "metrics": {"enabled": True}}
    return values


def role_rules(verbs: list[str]) -> list[dict[str, Any]]:
    return [{"apiGroups": [deploy_tree.SELDON_GROUP],
             "resources": [SELDON_PLURALS[k] for k in deploy_tree.KINDS], "verbs": verbs}]


def app_project(cfg: GitOpsConfig) -> dict[str, Any]:
    """The project of the model deployments: the deploy repository into `seldon`, the tree's kinds only."""
    return {
        "description": "Model deployments (Seldon Models and Experiments) from the deploy tree",
        "sourceRepos": [cfg.repo_url],
        "destinations": [{"server": IN_CLUSTER, "namespace": SELDON_NAMESPACE}],
        "clusterResourceWhitelist": [],
        "namespaceResourceWhitelist": [{"group": deploy_tree.SELDON_GROUP, "kind": k} for k in deploy_tree.KINDS],
    }


def application_path(cfg: GitOpsConfig, environment: str, model: str) -> str:
    return f"{cfg.path}/{deploy_tree.model_dir(environment, model)}"


def application_set(ctx: StackContext) -> dict[str, Any]:
    """One Application per enabled model of this stack's environment (a list generator from config: the
    Applications are known in the plan, and a model switched off loses its Application, whose finalizer
    then deletes the model's objects)."""
    cfg, env = ctx.cfg.workloads.gitops, ctx.env
    elements = [{"model": r.name, "environment": env, "path": application_path(cfg, env, r.name)}
                for r in model_releases(ctx.cfg)]
    return {
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "generators": [{"list": {"elements": elements}}],
        "template": {
            "metadata": {"name": "{{.model}}-{{.environment}}",
                         "labels": {deploy_tree.MODEL_LABEL: "{{.model}}",
                                    "mlplatform.io/environment": "{{.environment}}"},
                         "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
            "spec": {
                "project": PROJECT,
                "source": {"repoURL": cfg.repo_url, "targetRevision": cfg.branch, "path": "{{.path}}"},
                "destination": {"server": IN_CLUSTER, "namespace": SELDON_NAMESPACE},
                "syncPolicy": {
                    "automated": {"enabled": True, "prune": True, "selfHeal": True},
                    "syncOptions": list(SYNC_OPTIONS),
                    "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
                },
                "ignoreDifferences": [{"group": deploy_tree.SELDON_GROUP, "kind": "Experiment",
                                       "jqPathExpressions": list(IGNORED_EXPERIMENT_FIELDS)}],
            },
        },
    }


def alert_rules(runbook_base_url: str) -> list[dict[str, Any]]:
    """An Application of the model deployments out of sync or degraded (the controller's argocd_app_info)."""
    runbook = f"{runbook_base_url}docs/DELIVERY.md#when-a-model-application-is-out-of-sync-or-degraded"
    apps = f'namespace="{NAMESPACE}", project="{PROJECT}"'

    def alert(name: str, selector: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {"alert": name, "expr": f"max by (name) (argocd_app_info{{{apps}, {selector}}}) == 1", "for": for_,
                "labels": {"severity": severity, "platform": "mlplatform"},
                "annotations": {"summary": summary, "runbook_url": runbook}}

    return [{"name": "mlplatform-gitops", "interval": "1m", "rules": [
        alert("MLPlatModelDeploymentOutOfSync", 'sync_status!="Synced"', "30m", "warning",
              "Argo CD Application {{ $labels.name }} has not matched the deploy tree for 30 m"),
        alert("MLPlatModelDeploymentDegraded", 'health_status="Degraded"', "10m", "critical",
              "Argo CD reports the model deployment {{ $labels.name }} Degraded for 10 m"),
    ]}]


@dataclass(frozen=True, kw_only=True)
class GitOpsArgs:
    """Inputs of `GitOps` (settings from `workloads.gitops`)."""

    ctx: StackContext
    seldon: pulumi.Resource
    """The Seldon component: the `seldon` namespace and the CRDs of the Models and Experiments."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """What the release waits for (add-ons, monitoring CRDs)."""


class GitOps(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: GitOpsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:GitOps", name, None, opts)
        ctx = args.ctx
        cfg = ctx.cfg.workloads.gitops
        ns = namespace(NAMESPACE, self)
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        # The API server (EKS endpoint) and git over HTTPS, git over SSH: addresses outside the cluster.
        network_policies(NamespacePolicy(NAMESPACE, egress=[EgressRule(ANYWHERE, (PORT_HTTPS, PORT_SSH))]), self, [ns])
        redis_password = random.RandomPassword(f"{name}-redis-password", length=32, special=False,
                                               opts=pulumi.ResourceOptions(parent=self))
        redis = k8s.core.v1.Secret(
            f"{name}-redis-secret", type="Opaque",
            metadata={"name": REDIS_SECRET, "namespace": NAMESPACE, "labels": labels("argocd", "redis")},
            string_data={"auth": redis_password.result}, opts=after_ns)
        self.release = helm_release(RELEASE, ctx, "argo-cd", NAMESPACE, argocd_values(ctx), self,
                                    depends_on=[ns, redis, *args.depends_on])
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[self.release, args.seldon])
        for who, account, verbs in (("controller", CONTROLLER_SA,
                                     ["get", "list", "watch", "create", "update", "patch", "delete"]),
                                    ("server", SERVER_SA, ["get", "list", "watch"])):
            role_name = f"argocd-{who}-models"
            role = k8s.rbac.v1.Role(
                f"{name}-{who}-role",
                metadata={"name": role_name, "namespace": SELDON_NAMESPACE, "labels": labels("argocd", who)},
                rules=role_rules(verbs), opts=after_release)
            k8s.rbac.v1.RoleBinding(
                f"{name}-{who}-binding",
                metadata={"name": role_name, "namespace": SELDON_NAMESPACE, "labels": labels("argocd", who)},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                subjects=[{"kind": "ServiceAccount", "namespace": NAMESPACE, "name": account}],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]))
        project = k8s.apiextensions.CustomResource(
            f"{name}-project", api_version="argoproj.io/v1alpha1", kind="AppProject",
            metadata={"name": PROJECT, "namespace": NAMESPACE, "labels": labels("argocd", "project")},
            spec=app_project(cfg), opts=after_release)
        k8s.apiextensions.CustomResource(
            f"{name}-applicationset", api_version="argoproj.io/v1alpha1", kind="ApplicationSet",
            metadata={"name": APPLICATION_SET, "namespace": NAMESPACE, "labels": labels("argocd", "applicationset")},
            spec=application_set(ctx),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, project, args.seldon]))
        if ctx.cfg.workloads.observability.enabled:
            for component in METRICS:
                service_monitor(f"{RELEASE}-{component}", NAMESPACE,
                                {"app.kubernetes.io/name": METRICS[component],
                                 "app.kubernetes.io/component": component,
                                 "app.kubernetes.io/instance": RELEASE},
                                "http-metrics", self, depends_on=[self.release])
            k8s.apiextensions.CustomResource(
                f"{name}-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata={"name": "mlplatform-gitops", "namespace": "monitoring", "labels": labels("alerts", "gitops")},
                spec={"groups": alert_rules(ctx.cfg.workloads.observability.runbook_base_url)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, *args.depends_on]))
        self.register_outputs({"namespace": NAMESPACE, "applicationSet": APPLICATION_SET})
