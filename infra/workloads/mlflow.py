"""MLflow tracking server and model registry (community-charts `mlflow`, MIT).

RDS PostgreSQL backend over TLS that authenticates the server (`PGSSLMODE=verify-full` against the RDS CA bundle,
copied into the pod from the model-server image by the init container `rds-ca`, infra/workloads/rds_tls.py; the
chart's migration init container gets the same settings from the post-renderer, scripts/helm-postrender-mlflow;
credentials from a Kubernetes Secret, never Helm values), proxied S3 artifacts through the server's IRSA role
(clients need no AWS credentials), basic-auth on by default with generated admin credentials whose permission table
lives in the same database (so every replica sees the same users), `allowed-hosts` pinned to the
in-cluster service names, Prometheus metrics, and 2+ replicas with a PodDisruptionBudget in prod.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from contracts.cluster import MLFLOW_SERVER, NODE_ROLE_LABEL, WORKLOAD_IDENTITIES
from infra.aws.interfaces import DataServices
from infra.workloads.args import WorkloadArgs
from infra.workloads.isolation import (
    ANYWHERE,
    PORT_HTTPS,
    PORT_POSTGRES,
    EgressRule,
    IngressRule,
    NamespacePolicy,
    network_policies,
    pod_disruption_budget,
)
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    RESTRICTED_POD_SECCOMP,
    helm_release,
    labels,
    namespace,
    resources,
    service_account,
)
from infra.workloads.rds_tls import ca_mount, ca_volume, copy_container, libpq_env
from stacks.context import StackContext

NAMESPACE = MLFLOW_SERVER.namespace
RELEASE = MLFLOW_SERVER.name  # the chart names its Deployment after the release
# The VPC CNI network policy agent requires a Service port to equal its container port (the server listens
# on 5000): a port-80 Service made every client's egress rule miss the address it actually sends to.
SERVICE_PORT = 5000
CONTAINER_PORT = 5000  # the chart's service.containerPort
# `mlflow server --expose-prometheus DIR`: Prometheus multiprocess files, written at start (a volume: the
# root filesystem is read-only).
METRICS_DIR = "/mlflow/metrics"
ADMIN_SECRET = "mlflow-admin"
DB_SECRET = "mlflow-db"
FLASK_SECRET = "mlflow-flask"
# Chart selector labels (charts/mlflow/templates/_helpers.tpl "mlflow.selectorLabels").
SELECTOR = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": RELEASE}
# The chart's migration init container takes its environment from the chart's own ConfigMap and Secrets only, and
# the chart puts `initContainers` after its own: the post-renderer adds the TLS settings there and runs `rds-ca` first.
POSTRENDER = "scripts/helm-postrender-mlflow"
# Namespaces whose pods call the tracking server / registry.
CLIENT_NAMESPACES = ("seldon", "feast", "ml-training", "monitoring", "kubeflow")


def tracking_uri() -> str:
    return f"http://{RELEASE}.{NAMESPACE}.svc.cluster.local:{SERVICE_PORT}"


def pod_address_pattern(pod_cidr: str) -> str:
    """`<pod IP>:<container port>` as an MLflow allowed-hosts pattern (fnmatch): the leading octets the
    CIDR fixes, then `*` (pod IPs are VPC addresses with the VPC CNI)."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    octets = str(network.network_address).split(".")[: network.prefixlen // 8]
    return ".".join([*octets, "*"]) + f":{CONTAINER_PORT}"


def allowed_hosts(pod_cidr: str) -> list[str]:
    """Host headers the server accepts (DNS-rebinding protection of MLflow >= 3.5): the Service's names, and
    pod addresses, which Prometheus sends when it scrapes `/metrics` (an IP literal, which DNS rebinding
    cannot use; MLflow exempts only /health and /version from the check)."""
    svc = f"{RELEASE}.{NAMESPACE}"
    return [RELEASE, svc, f"{svc}.svc", f"{svc}.svc.cluster.local",
            f"{svc}.svc.cluster.local:{SERVICE_PORT}", f"localhost:{SERVICE_PORT}", pod_address_pattern(pod_cidr)]


def mlflow_values(ctx: StackContext, data: DataServices, service_account_name: str, pod_cidr: str,
                  ca_image: pulumi.Input[str]) -> dict[str, Any]:
    cfg = ctx.cfg.workloads.mlflow
    db = data.database
    postgres = {"enabled": True, "host": db.host, "port": db.port, "database": db.database}
    return {
        "replicaCount": cfg.replicas,
        # The chart's containers already meet `restricted`; its pod sets no seccomp profile (merged with
        # the chart's fsGroup).
        "podSecurityContext": RESTRICTED_POD_SECCOMP,
        "serviceAccount": {"create": False, "name": service_account_name},
        "service": {"port": SERVICE_PORT},
        "backendStore": {
            "databaseMigration": True,
            "databaseConnectionCheck": True,
            "postgres": postgres,
            "existingDatabaseSecret": {"name": DB_SECRET, "usernameKey": "username", "passwordKey": "password"},
        },
        "artifactRoot": {
            "proxiedArtifactStorage": True,
            "s3": {"enabled": True, "bucket": data.buckets["mlflow"], "path": "artifacts"},
        },
        "auth": {
            "enabled": True,
            "existingAdminSecret": {"name": ADMIN_SECRET, "usernameKey": "username", "passwordKey": "password"},
            "defaultPermission": "READ",
            "postgres": {**postgres, "existingSecret": {"name": DB_SECRET, "usernameKey": "username",
                                                        "passwordKey": "password"}},
        },
        "serverAllowedHosts": allowed_hosts(pod_cidr),
        # The chart's `serviceMonitor` (which also adds --expose-prometheus) has no basic auth, and the basic-auth
        # app answers /metrics with 401 without it: the flag comes from extraArgs, the ServiceMonitor is ours.
        "extraArgs": {"exposePrometheus": METRICS_DIR},
        "extraVolumes": [{"name": "prometheus-metrics", "emptyDir": {"sizeLimit": "256Mi"}}, ca_volume()],
        "extraVolumeMounts": [{"name": "prometheus-metrics", "mountPath": METRICS_DIR}, ca_mount()],
        "initContainers": [copy_container(ca_image, CONTAINER_SECURITY_CONTEXT)],
        # libpq's TLS settings apply to both of the server's connections (tracking store and auth database).
        "extraEnvVars": {**{e["name"]: e["value"] for e in libpq_env()}, "AWS_REGION": ctx.cfg.region,
                         "AWS_DEFAULT_REGION": ctx.cfg.region},
        "extraSecretNamesForEnvFrom": [FLASK_SECRET],
        "resources": resources(cfg.resources),
        # Soft zone spread of replicas (the chart exposes affinity, not topologySpreadConstraints).
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone",
                                               "labelSelector": {"matchLabels": SELECTOR}}}]}},
        "nodeSelector": {NODE_ROLE_LABEL: "general"},
    }


@dataclass(frozen=True, kw_only=True)
class MlflowArgs(WorkloadArgs):
    """Inputs of `Mlflow` (settings from `workloads.mlflow`)."""

    ca_image: pulumi.Input[str]
    """The model-server image, which carries the RDS CA bundle the pod's `rds-ca` init container copies."""


class Mlflow(pulumi.ComponentResource):
    tracking_uri: str
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: MlflowArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Mlflow", name, None, opts)
        ctx, data, vpc_cidr, depends_on = args.ctx, args.data, args.vpc_cidr, args.depends_on
        ns = namespace(NAMESPACE, self)
        sa = service_account("mlflow", self, ns, data.role_arns["mlflow"])
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        admin_password = random.RandomPassword(f"{name}-admin-password", length=32, special=False,
                                               opts=pulumi.ResourceOptions(parent=self))
        flask_key = random.RandomPassword(f"{name}-flask-key", length=48, special=False,
                                          opts=pulumi.ResourceOptions(parent=self))
        secrets = [
            k8s.core.v1.Secret(f"{name}-db-secret", metadata={"name": DB_SECRET, "namespace": NAMESPACE,
                                                              "labels": labels("mlflow")},
                               type="Opaque",
                               string_data={"username": data.database.username,
                                            "password": data.database.password}, opts=after_ns),
            k8s.core.v1.Secret(f"{name}-admin-secret", metadata={"name": ADMIN_SECRET, "namespace": NAMESPACE,
                                                                 "labels": labels("mlflow")},
                               type="Opaque",
                               string_data={"username": "admin", "password": admin_password.result},
                               opts=after_ns),
            k8s.core.v1.Secret(f"{name}-flask-secret", metadata={"name": FLASK_SECRET, "namespace": NAMESPACE,
                                                                 "labels": labels("mlflow")},
                               type="Opaque",
                               string_data={"MLFLOW_FLASK_SERVER_SECRET_KEY": flask_key.result},
                               opts=after_ns),
        ]
        network_policies(NamespacePolicy(
            NAMESPACE,
            ingress=[IngressRule(CLIENT_NAMESPACES, (5000,))],
            egress=[EgressRule(vpc_cidr, (PORT_POSTGRES,)), EgressRule(ANYWHERE, (PORT_HTTPS,))],
        ), self, [ns])
        values = mlflow_values(ctx, data, WORKLOAD_IDENTITIES["mlflow"].service_account, vpc_cidr, args.ca_image)
        self.release = helm_release(RELEASE, ctx, "mlflow", NAMESPACE, values, self,
                                    depends_on=[ns, sa, *secrets, *(depends_on or [])], postrender=POSTRENDER)
        if ctx.cfg.workloads.observability.enabled:
            self._service_monitor(depends_on or [])
        pod_disruption_budget(RELEASE, NAMESPACE, SELECTOR, ctx.cfg.workloads.mlflow.replicas, self, [ns])
        self.tracking_uri = tracking_uri()
        self.admin_secret_name = ADMIN_SECRET
        self.admin_password = pulumi.Output.secret(admin_password.result)  # clients in other namespaces copy it
        self.register_outputs({"trackingUri": self.tracking_uri, "adminSecret": ADMIN_SECRET})

    def _service_monitor(self, depends_on: list[pulumi.Resource]) -> None:
        """Prometheus logs in as the admin (the basic-auth app lets any user read /metrics; the chart makes no
        other user). The credentials are read from the Secret in this namespace, beside the monitor."""
        secret = {"name": ADMIN_SECRET}
        k8s.apiextensions.CustomResource(
            "servicemonitor-mlflow", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata={"name": RELEASE, "namespace": NAMESPACE, "labels": labels("mlflow")},
            spec={"selector": {"matchLabels": SELECTOR}, "namespaceSelector": {"matchNames": [NAMESPACE]},
                  "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s",
                                 "basicAuth": {"username": {**secret, "key": "username"},
                                               "password": {**secret, "key": "password"}}}]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, *depends_on]))
