"""The feedback endpoint on the cluster (`workloads.feedback`): outcomes of served requests (labels that arrive
later, clicks) that the A/B tests and bandits read.

Namespace `delivery` (Pod Security `restricted`), Deployment and Service `feedback` on port 9097, running
`python -m ml.delivery.feedback_server --store postgres` from the model-server image (ml/ is in it) with a
read-only root filesystem, as service account `feedback` without a Kubernetes token or cloud identity.

Storage: its own database and login on the platform's RDS PostgreSQL (`workloads.feedback.database`,
`.username`; password generated here), so every replica sees the same outcomes and each write is idempotent
per request id. The login is made by the init container `provision` (`python -m ml.delivery.feedback_pg
provision`), the only place the instance's admin credentials (Secret `feedback-db-admin`) are mounted; the
server's container has only its own login (Secret `feedback-db`). TLS to RDS authenticates the server:
`PGSSLMODE=verify-full` against the RDS CA bundle the image carries (infra/workloads/rds_tls.py).

Who may call it (NetworkPolicies): the experiment controllers in `ml-training` (pods labelled
`app.kubernetes.io/name: experiment-controller`: the bandit Deployments and the A/B test Jobs), the
namespaces of `workloads.feedback.clientNamespaces` (the applications that post labels, clicks and served
records), and Prometheus from `monitoring` (the ServiceMonitor). Its own egress: DNS and PostgreSQL in the VPC.
Replicas per environment; from two on, a PodDisruptionBudget and a zone spread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from contracts.cluster import FEEDBACK_PORT, FEEDBACK_SERVER
from infra.aws.interfaces import DatabaseEndpoint
from infra.workloads.args import WorkloadArgs
from infra.workloads.experiments import SELECTOR as CONTROLLER_SELECTOR
from infra.workloads.governance import NAMESPACE as CONTROLLER_NAMESPACE
from infra.workloads.isolation import (
    PORT_POSTGRES,
    EgressRule,
    IngressRule,
    NamespacePolicy,
    network_policies,
    pod_disruption_budget,
    zone_spread,
)
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    NODE_ROLE_LABEL,
    TMP_MOUNT,
    labels,
    namespace,
    pod_security_context,
    resources,
    service_monitor,
    tmp_volume,
)
from infra.workloads.rds_tls import libpq_env
from stacks.context import StackContext
from stacks.schema import FeedbackConfig

NAMESPACE, NAME, PORT = FEEDBACK_SERVER.namespace, FEEDBACK_SERVER.name, FEEDBACK_PORT
SERVICE_ACCOUNT = NAME
DB_SECRET = "feedback-db"  # the endpoint's own login
ADMIN_SECRET = "feedback-db-admin"  # the instance's admin: the init container only
SELECTOR = {"app.kubernetes.io/name": NAME}
CHECKSUM_ANNOTATION = "mlplatform.io/db-login-checksum"


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _pg_env(db: DatabaseEndpoint, database: str, secret: str) -> list[dict[str, Any]]:
    """libpq's environment: the instance, a database and the login of `secret`; TLS with the server verified."""
    return [{"name": "PGHOST", "value": db.host}, {"name": "PGPORT", "value": str(db.port)},
            {"name": "PGDATABASE", "value": database}, _secret_env("PGUSER", secret, "username"),
            _secret_env("PGPASSWORD", secret, "password"), *libpq_env(), {"name": "PGCONNECT_TIMEOUT", "value": "10"}]


def server_args(models: list[str]) -> list[str]:
    return ["python", "-m", "ml.delivery.feedback_server", "--store", "postgres", "--host", "0.0.0.0", "--port",
            str(PORT), "--models", ",".join(models)]


def login_checksum(password: str) -> str:
    """A short digest of the endpoint's password for the pod template: a changed password changes the template, so
    the Deployment rolls and the new pods' `provision` sets it (a Secret change alone restarts nothing). 64 bits of
    a SHA-256 of a 32-character random password: it tells a change, not the password."""
    return hashlib.sha256(password.encode()).hexdigest()[:16]


def deployment_spec(cfg: FeedbackConfig, db: DatabaseEndpoint, image: pulumi.Input[str],
                    models: list[str], checksum: pulumi.Input[str]) -> dict[str, Any]:
    common_env = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    provision = {
        "name": "provision", "image": image, "command": ["python", "-m", "ml.delivery.feedback_pg", "provision"],
        # The admin connects to the instance's initial database; it creates the endpoint's own.
        "env": [*_pg_env(db, db.database, ADMIN_SECRET), *common_env,
                {"name": "FEEDBACK_DB_USER", "value": cfg.username},
                {"name": "FEEDBACK_DB_NAME", "value": cfg.database},
                _secret_env("FEEDBACK_DB_PASSWORD", DB_SECRET, "password")],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": CONTAINER_SECURITY_CONTEXT, "volumeMounts": [TMP_MOUNT],
    }
    server = {
        "name": NAME, "image": image, "command": server_args(models),
        "env": [*_pg_env(db, cfg.database, DB_SECRET), *common_env],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # Ready when the store answers (a replica that lost the database leaves the Service); alive while it serves.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 30},
        "resources": resources(cfg.resources), "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [TMP_MOUNT],
    }
    spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,  # it never calls the Kubernetes API
        "securityContext": pod_security_context(),
        "nodeSelector": {NODE_ROLE_LABEL: "general"},
        "initContainers": [provision], "containers": [server],
        "volumes": [tmp_volume("64Mi")],
    }
    if cfg.replicas > 1:
        spec["topologySpreadConstraints"] = zone_spread(SELECTOR)
    return {
        "replicas": cfg.replicas, "selector": {"matchLabels": SELECTOR},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": {**labels(NAME, "feedback"), **SELECTOR},
                                  "annotations": {CHECKSUM_ANNOTATION: checksum}}, "spec": spec},
    }


def controllers_ingress_spec() -> dict[str, Any]:
    """The experiment controllers (bandit Deployments, A/B Jobs) of `ml-training`, and only they of that namespace."""
    return {"podSelector": {"matchLabels": SELECTOR}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": CONTROLLER_NAMESPACE}},
                "podSelector": {"matchLabels": CONTROLLER_SELECTOR}}],
                "ports": [{"protocol": "TCP", "port": PORT}]}]}


def namespace_policy(cfg: FeedbackConfig, vpc_cidr: str) -> NamespacePolicy:
    clients = sorted(set(cfg.client_namespaces))
    return NamespacePolicy(NAMESPACE, ingress=[IngressRule(clients, (PORT,))] if clients else [],
                           egress=[EgressRule(vpc_cidr, (PORT_POSTGRES,))])


def enabled_models(ctx: StackContext) -> list[str]:
    return [n for n in ctx.cfg.models.names() if ctx.cfg.models[n].enabled]


@dataclass(frozen=True, kw_only=True)
class FeedbackEndpointArgs(WorkloadArgs):
    """Inputs of `FeedbackEndpoint` (settings from `workloads.feedback`)."""

    image: pulumi.Input[str]
    """The model-server image, which carries ml/delivery/feedback_server.py."""


class FeedbackEndpoint(pulumi.ComponentResource):
    """Namespace, service account, Secrets, Deployment, Service, ServiceMonitor, NetworkPolicies, PDB."""

    url: str

    def __init__(self, name: str, args: FeedbackEndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:FeedbackEndpoint", name, None, opts)
        ctx, db, cfg = args.ctx, args.data.database, args.ctx.cfg.workloads.feedback
        ns = namespace(NAMESPACE, self)
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        meta = {"namespace": NAMESPACE, "labels": labels(NAME, "feedback")}
        policies = network_policies(namespace_policy(cfg, args.vpc_cidr), self, [ns])
        policies.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-from-controllers", metadata={"name": "allow-experiment-controllers", **meta},
            spec=controllers_ingress_spec(), opts=after_ns))
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={"name": SERVICE_ACCOUNT, **meta},
                                        automount_service_account_token=False, opts=after_ns)
        password = random.RandomPassword(f"{name}-db-password", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        secrets = [
            k8s.core.v1.Secret(f"{name}-db-secret", metadata={"name": DB_SECRET, **meta},
                               string_data={"username": cfg.username, "password": password.result}, opts=after_ns),
            k8s.core.v1.Secret(f"{name}-db-admin-secret", metadata={"name": ADMIN_SECRET, **meta},
                               string_data={"username": db.username, "password": db.password}, opts=after_ns),
        ]
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment", metadata={"name": NAME, **meta},
            spec=deployment_spec(cfg, db, args.image, enabled_models(ctx),
                                 pulumi.Output.unsecret(password.result.apply(login_checksum))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, sa, *secrets, *policies, *args.depends_on]))
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": NAME, "namespace": NAMESPACE, "labels": {**labels(NAME), **SELECTOR}},
            spec={"selector": SELECTOR,
                  "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
            opts=after_ns)
        service_monitor(NAME, NAMESPACE, SELECTOR, "http", self, depends_on=[service, *args.depends_on])
        pod_disruption_budget(NAME, NAMESPACE, SELECTOR, cfg.replicas, self, depends_on=[ns])
        self.url = f"http://{NAME}.{NAMESPACE}.svc.cluster.local:{PORT}"
        self.deployment = deployment
        self.register_outputs({"feedbackUrl": self.url})
