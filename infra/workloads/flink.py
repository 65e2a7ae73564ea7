"""Streaming features on Flink: cert-manager and the Flink Kubernetes Operator (charts pinned in the BOM), each in
its own namespace, and the streaming-features job as one FlinkDeployment in `flink-jobs`.

- `cert-manager`: issues the certificate of the operator's admission webhook (the operator chart renders a
  cert-manager Issuer and Certificate). Its CRDs are installed by its release.
- `flink-operator`: the operator watches only `flink-jobs` (`watchNamespaces`: the chart then binds it with a
  Role there and keeps cluster-wide rights to read its CRDs and to run its webhook). Its Prometheus reporter is
  scraped (port 9999).
- `flink-jobs`: the FlinkDeployment of the stream model's job module (`ModelSpec.stream.job`), in application
  mode from the flink-job image (docker/flink-job/Dockerfile). The JobManager and TaskManagers run under the
  chart's job service account `flink`, annotated with the IRSA role `flink-job` (read the transactions topic
  through MSK IAM, consumer groups `mlplat-flink-*` only; checkpoints and savepoints under `flink/` of the
  Feast bucket). The job writes the Feast online store (ElastiCache, TLS + AUTH token) in Feast's layout.
- Monitoring: PodMonitors on the operator and the job's pods, the alert rules with runbooks and the dashboard of
  job health and feature freshness (contracts/flink.py).

Flink docs relied on: the operator's FlinkDeployment reference (job spec, podTemplate, `flinkVersion` v2_2), the
Prometheus metric reporter, the PyFlink application-mode entry point (`PythonDriver -pym`); docs/DATA-PLATFORM.md
cites them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts import flink as contract
from contracts import model_registry
from contracts.cluster import WORKLOAD_IDENTITIES
from contracts.feast import PROJECT
from infra.aws.identities import FLINK_STATE_PREFIX
from infra.workloads.args import WorkloadArgs
from infra.workloads.isolation import (
    ANYWHERE,
    PORT_HTTPS,
    PORT_KAFKA_IAM,
    PORT_REDIS,
    CidrIngressRule,
    EgressRule,
    IngressRule,
    NamespacePolicy,
    PeerEgressRule,
    network_policies,
)
from infra.workloads.kube import (
    IRSA_ANNOTATION,
    NODE_ROLE_LABEL,
    RESTRICTED_CONTAINER,
    helm_release,
    labels,
    namespace,
    pod_security_context,
)
from infra.workloads.operator_jobs import Scrape, monitoring, operator, tagged_image
from stacks.context import StackContext
from stacks.schema import Resources

OPERATOR_NAMESPACE = contract.OPERATOR_NAMESPACE
JOB_NAMESPACE = WORKLOAD_IDENTITIES["flink-job"].namespace
CERT_MANAGER_NAMESPACE = contract.CERT_MANAGER_NAMESPACE
SERVICE_ACCOUNT = WORKLOAD_IDENTITIES["flink-job"].service_account
OPERATOR_RELEASE = "flink-kubernetes-operator"
CERT_MANAGER_RELEASE = "cert-manager"
FLINK_UID = 9999  # the `flink` user of Apache Flink's images (and of the operator's)
CERT_MANAGER_UID = 1000
OPERATOR_WEBHOOK_PORT = 9443
CERT_MANAGER_WEBHOOK_PORT = 10250
JOBMANAGER_REST_PORT = 8081
REDIS_SECRET = "streaming-redis"
OPERATOR_SELECTOR = {"app.kubernetes.io/name": "flink-kubernetes-operator"}
JOB_SELECTOR = {"app": contract.DEPLOYMENT_NAME}  # the operator labels the job's pods `app: <deployment>`
COMPONENT = "streaming-features"  # the dashboard's and the alert rules' names
FLINK_VERSION = "v2_2"


def job_image(model_server_image: pulumi.Input[str]) -> pulumi.Output[str]:
    """The job image is pushed to the model-server repository with the tag `<model-server tag>-flink-job`."""
    return tagged_image(model_server_image, "flink-job")


def flink_version(ctx: StackContext) -> str:
    """The Flink runtime's version: PyFlink's in the job's own environment (BOM `pythonTools.flink`)."""
    return ctx.bom.python_tools["flink"]["apache-flink"]


def _container_context() -> dict[str, Any]:
    return {**RESTRICTED_CONTAINER, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def cert_manager_values() -> dict[str, Any]:
    """Values of the cert-manager chart (checked against the rendered chart by `mlplat conform`)."""
    general = {NODE_ROLE_LABEL: "general"}
    small = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    return {
        "crds": {"enabled": True},
        "nodeSelector": general, "resources": small,
        "webhook": {"nodeSelector": general, "resources": small},
        "cainjector": {"nodeSelector": general, "resources": small},
        "startupapicheck": {"nodeSelector": general},
        # Ours scrapes it (a PodMonitor in this program, like every other workload's).
        "prometheus": {"enabled": True, "servicemonitor": {"enabled": False}},
    }


def operator_values(ctx: StackContext, role_arn: pulumi.Input[str]) -> dict[str, Any]:
    """Values of the flink-kubernetes-operator chart (checked against the rendered chart by `mlplat conform`)."""
    reporter = (
        "kubernetes.operator.metrics.reporter.prom.factory.class: "
        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory\n"
        f"kubernetes.operator.metrics.reporter.prom.port: {contract.OPERATOR_METRICS_PORT}\n")
    return {
        "watchNamespaces": [JOB_NAMESPACE],
        "operatorPod": {
            "nodeSelector": {NODE_ROLE_LABEL: "general"},
            "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "webhook": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"cpu": "500m", "memory": "512Mi"}}},
        },
        "podSecurityContext": pod_security_context(FLINK_UID),
        "operatorSecurityContext": _container_context(),
        "webhookSecurityContext": _container_context(),
        # The job pods' service account, with the job's IRSA role (the chart keeps it on uninstall).
        "jobServiceAccount": {"create": True, "name": SERVICE_ACCOUNT,
                              "annotations": {IRSA_ANNOTATION: role_arn, "helm.sh/resource-policy": "keep"}},
        "metrics": {"port": contract.OPERATOR_METRICS_PORT},
        "defaultConfiguration": {"create": True, "append": True, "config.yaml": reporter},
    }


def _memory_mb(quantity: str) -> str:
    # Flink sizes its JVM from a total process memory in its own notation (e.g. "2048m").
    number, unit = quantity[:-2], quantity[-2:]
    if unit not in ("Mi", "Gi") or not number.isdigit():
        raise ValueError(f"Flink pod memory must be whole Mi or Gi (e.g. 2Gi), got {quantity!r}")
    return f"{int(number) * (1024 if unit == 'Gi' else 1)}m"


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _resource(res: Resources) -> dict[str, Any]:
    return {"cpu": _cpu(res.cpu_request), "memory": _memory_mb(res.memory_request)}


def deployment_spec(ctx: StackContext, image: str, feast_bucket: str, bootstrap: str, redis_host: str,
                    redis_port: int, redis_tls: bool) -> dict[str, Any]:
    """The FlinkDeployment spec (checked against the operator chart's CRD schema by `mlplat conform`)."""
    stream = model_registry.stream()
    if stream is None or stream.job is None:
        raise ValueError("workloads.flink.enabled needs a registered model whose spec declares stream.job")
    cfg = ctx.cfg.workloads.flink
    state = f"s3://{feast_bucket}/{FLINK_STATE_PREFIX}"
    scheme = "rediss" if redis_tls else "redis"
    env = [
        {"name": "VELOCITY_SOURCE", "value": "kafka"},
        {"name": "KAFKA_BOOTSTRAP", "value": bootstrap},
        {"name": "KAFKA_TOPIC", "value": stream.topic},
        {"name": "KAFKA_GROUP", "value": f"{contract.CONSUMER_GROUP_PREFIX}{contract.DEPLOYMENT_NAME}"},
        {"name": "AWS_REGION", "value": ctx.cfg.region},
        {"name": "FEAST_PROJECT", "value": PROJECT},
        {"name": "ALLOWED_LATENESS_SECONDS", "value": str(cfg.allowed_lateness_seconds)},
        {"name": "REDIS_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": REDIS_SECRET, "key": "token"}}},
        # Kubernetes expands $(REDIS_AUTH_TOKEN) from the variable above.
        {"name": "REDIS_URL", "value": f"{scheme}://:$(REDIS_AUTH_TOKEN)@{redis_host}:{redis_port}/0"},
        # The S3 filesystem of Flink's image (checkpoints, savepoints), loaded as a plugin.
        {"name": "ENABLE_BUILT_IN_PLUGINS", "value": f"flink-s3-fs-hadoop-{flink_version(ctx)}.jar"},
    ]
    return {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "flinkVersion": FLINK_VERSION,
        "serviceAccount": SERVICE_ACCOUNT,
        "flinkConfiguration": {
            "taskmanager.numberOfTaskSlots": "1",
            "execution.checkpointing.interval": f"{cfg.checkpoint_interval_seconds}s",
            "execution.checkpointing.dir": f"{state}checkpoints",
            "execution.checkpointing.savepoint-dir": f"{state}savepoints",
            "high-availability.type": "kubernetes",
            "high-availability.storageDir": f"{state}ha",
            "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
            "metrics.reporter.prom.port": str(contract.METRICS_PORT),
        },
        "podTemplate": {
            "metadata": {"labels": labels("streaming-features", "flink")},
            "spec": {
                "securityContext": pod_security_context(FLINK_UID),
                "nodeSelector": {NODE_ROLE_LABEL: "general"},
                "containers": [{
                    "name": "flink-main-container",
                    "securityContext": _container_context(),
                    "env": env,
                    "ports": [{"name": "metrics", "containerPort": contract.METRICS_PORT}],
                }],
            },
        },
        "jobManager": {"replicas": 1, "resource": _resource(cfg.job_manager)},
        "taskManager": {"resource": _resource(cfg.task_manager)},
        "job": {
            "jarURI": f"local:///opt/flink/opt/flink-python-{flink_version(ctx)}.jar",
            "entryClass": "org.apache.flink.client.python.PythonDriver",
            "args": ["-pym", stream.job],
            "parallelism": cfg.parallelism,
            # Restarts and upgrades resume from the newest checkpoint: the 24 h windows are not rebuilt empty.
            "upgradeMode": "last-state",
            "state": "running",
        },
    }


@dataclass(frozen=True, kw_only=True)
class StreamingFeaturesArgs(WorkloadArgs):
    """Inputs of `StreamingFeatures` (settings from `workloads.flink`)."""

    image: pulumi.Input[str]
    """The flink-job image (docker/flink-job/Dockerfile) in the model-server repository."""


class StreamingFeatures(pulumi.ComponentResource):
    def __init__(self, name: str, args: StreamingFeaturesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:StreamingFeatures", name, None, opts)
        ctx, data, vpc_cidr, depends_on = args.ctx, args.data, args.vpc_cidr, args.depends_on
        cm_ns = namespace(CERT_MANAGER_NAMESPACE, self)
        self.cert_manager = helm_release(
            CERT_MANAGER_RELEASE, ctx, "cert-manager", CERT_MANAGER_NAMESPACE, cert_manager_values(), self,
            depends_on=[cm_ns, *(depends_on or [])])
        op = operator(self, ctx, release=OPERATOR_RELEASE, chart_key="flink-kubernetes-operator",
                      operator_namespace=OPERATOR_NAMESPACE, jobs_namespace=JOB_NAMESPACE,
                      values=operator_values(ctx, data.role_arns["flink-job"]),
                      depends_on=[self.cert_manager, *(depends_on or [])])
        operator_ns, jobs_ns, self.operator = op.namespace, op.jobs_namespace, op.release
        # cert-manager and the operator call the Kubernetes API; the API server calls their webhooks from the
        # control plane's interfaces in the VPC; the operator calls the JobManager's REST API.
        network_policies(NamespacePolicy(
            CERT_MANAGER_NAMESPACE, ingress=[CidrIngressRule(vpc_cidr, (CERT_MANAGER_WEBHOOK_PORT,))],
            egress=[EgressRule(ANYWHERE, (PORT_HTTPS,))]), self, [cm_ns])
        network_policies(NamespacePolicy(
            OPERATOR_NAMESPACE, ingress=[CidrIngressRule(vpc_cidr, (OPERATOR_WEBHOOK_PORT,))],
            egress=[EgressRule(ANYWHERE, (PORT_HTTPS,)), PeerEgressRule((JOB_NAMESPACE,), (JOBMANAGER_REST_PORT,))]),
            self, [operator_ns])
        # The job: MSK (IAM port) and ElastiCache in the VPC, S3 and the Kubernetes API (the JobManager starts its
        # TaskManagers) over HTTPS; JobManager and TaskManagers talk inside the namespace.
        network_policies(NamespacePolicy(
            JOB_NAMESPACE, ingress=[IngressRule((OPERATOR_NAMESPACE,), (JOBMANAGER_REST_PORT,))],
            egress=[EgressRule(vpc_cidr, (PORT_KAFKA_IAM, PORT_REDIS)), EgressRule(ANYWHERE, (PORT_HTTPS,))]),
            self, [jobs_ns])

        secret = k8s.core.v1.Secret(
            f"{name}-redis-secret", type="Opaque",
            metadata={"name": REDIS_SECRET, "namespace": JOB_NAMESPACE, "labels": labels("streaming-features")},
            string_data={"token": data.redis.auth_token},
            # Rotated with the Feast copy by runbooks/redis-auth-rotation.md; Pulumi must not revert it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[jobs_ns], ignore_changes=["stringData", "data"]))
        spec = pulumi.Output.all(pulumi.Output.from_input(args.image), data.buckets["feast"],
                                 data.kafka.bootstrap_brokers_iam, data.redis.host).apply(
            lambda a: deployment_spec(ctx, a[0], a[1], a[2], a[3], data.redis.port, data.redis.tls))
        k8s.apiextensions.CustomResource(
            f"{name}-deployment", api_version="flink.apache.org/v1beta1", kind="FlinkDeployment",
            metadata={"name": contract.DEPLOYMENT_NAME, "namespace": JOB_NAMESPACE,
                      "labels": labels("streaming-features", "flink")},
            spec=spec, opts=pulumi.ResourceOptions(parent=self, depends_on=[jobs_ns, secret, self.operator]))
        monitoring(self, name, ctx, component=COMPONENT, scrapes=(
            Scrape(OPERATOR_RELEASE, OPERATOR_NAMESPACE, OPERATOR_SELECTOR),
            Scrape(contract.DEPLOYMENT_NAME, JOB_NAMESPACE, JOB_SELECTOR)),
            namespaces=[operator_ns, jobs_ns], dashboard=contract.DASHBOARD, rule_groups=contract.rule_groups,
            depends_on=depends_on or [])
        self.register_outputs({"jobNamespace": JOB_NAMESPACE})
