"""Feast: online feature server (feast-feature-server chart), materialization CronJob and the
streaming ingestor Deployment (the `ModelSpec.stream` of a registered model).

One `feature_store.yaml`, generated from the data-service outputs, serves all three: S3 registry,
Parquet offline store on S3, ElastiCache Redis online store over TLS with the auth token read from a
Secret at start-up (`${REDIS_AUTH_TOKEN}`, expanded by Feast), so no credential is in Helm values
or ConfigMaps.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from contracts import feast, model_registry
from contracts.cluster import (
    FEAST_INGESTOR,
    FEAST_MATERIALIZE,
    FEAST_REDIS_SECRET,
    FEAST_REDIS_SECRET_KEY,
    FEAST_SERVER,
)
from infra.aws.interfaces import WORKLOAD_IDENTITIES
from infra.workloads.args import WorkloadArgs
from infra.workloads.isolation import (
    ANYWHERE,
    PORT_HTTPS,
    PORT_KAFKA_IAM,
    PORT_REDIS,
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
    helm_release,
    labels,
    namespace,
    pod_monitor,
    pod_security_context,
    resources,
    service_account,
    service_monitor,
    tmp_volume,
)
from stacks.context import StackContext

NAMESPACE = FEAST_SERVER.namespace
RELEASE = "feast"
REDIS_SECRET = FEAST_REDIS_SECRET.name
SERVER_DEPLOYMENT = FEAST_SERVER.name
CONFIG_MAP = "feast-repo"
REPO_DIR = "/feast"
SERVER_PORT = 6566
METRICS_PORT = 8000  # `feast serve --metrics`
INGESTOR_METRICS_PORT = 9100
SELECTOR = {"app.kubernetes.io/name": "feast-feature-server", "app.kubernetes.io/instance": RELEASE}
INGESTOR_SELECTOR = {"app.kubernetes.io/name": "feast-stream-ingestor"}
CLIENT_NAMESPACES = ("seldon", "ml-training")
TMP_VOLUME = tmp_volume("256Mi")


def feature_store_yaml(redis_host: str, redis_port: int, bucket: str, tls: bool = True) -> str:
    """The repository config every Feast process in the cluster uses."""
    conn = f"{redis_host}:{redis_port},password=${{REDIS_AUTH_TOKEN}}" + (",ssl=true" if tls else "")
    return yaml.safe_dump({
        "project": feast.PROJECT,
        "provider": "aws",
        "registry": {"registry_type": "file", "path": f"s3://{bucket}/{feast.REGISTRY_KEY}",
                     "cache_ttl_seconds": 60},
        "online_store": {"type": "redis", "redis_type": "redis", "connection_string": conn},
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": feast.ENTITY_KEY_SERIALIZATION_VERSION,
    }, sort_keys=False)


def _redis_env() -> dict[str, Any]:
    token = {"secretKeyRef": {"name": REDIS_SECRET, "key": FEAST_REDIS_SECRET_KEY}}
    return {"name": "REDIS_AUTH_TOKEN", "valueFrom": token}


def server_values(ctx: StackContext, config_yaml: pulumi.Input[str]) -> dict[str, Any]:
    cfg = ctx.cfg.workloads.feast
    image = ctx.bom.images["feast-feature-server"]
    return {
        "replicaCount": cfg.replicas,
        # A fixed Deployment name: runbooks restart it after a Redis AUTH rotation.
        "fullnameOverride": SERVER_DEPLOYMENT,
        "image": {"repository": image.repository, "tag": image.tag},
        "feature_store_yaml_base64": pulumi.Output.from_input(config_yaml).apply(
            lambda y: base64.b64encode(y.encode()).decode()),
        "feast_mode": "online",
        "metrics": {"enabled": True},
        "serviceAccount": {"name": WORKLOAD_IDENTITIES["feast"].service_account},
        "extraEnvs": [_redis_env(), {"name": "AWS_REGION", "value": ctx.cfg.region}],
        "podSecurityContext": pod_security_context(),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "resources": resources(cfg.resources),
        # Feast writes the decoded feature_store.yaml to a temporary directory.
        "volumes": [TMP_VOLUME],
        "volumeMounts": [TMP_MOUNT],
        "nodeSelector": {NODE_ROLE_LABEL: "general"},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone",
                                               "labelSelector": {"matchLabels": SELECTOR}}}]}},
    }


@dataclass(frozen=True, kw_only=True)
class FeatureStoreArgs(WorkloadArgs):
    """Inputs of `FeatureStore` (settings from `workloads.feast`)."""

    ingestor_image: pulumi.Input[str]
    """The image of the stream ingestor Deployment (the model-server image, which carries every model package)."""


class FeatureStore(pulumi.ComponentResource):
    online_endpoint: str

    def __init__(self, name: str, args: FeatureStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:FeatureStore", name, None, opts)
        ctx, data, vpc_cidr, depends_on = args.ctx, args.data, args.vpc_cidr, args.depends_on
        ingestor_image = args.ingestor_image
        cfg = ctx.cfg.workloads.feast
        ns = namespace(NAMESPACE, self)
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        sa = service_account("feast", self, ns, data.role_arns["feast"])
        ingestor_sa = service_account("feast-ingestor", self, ns, data.role_arns["feast-ingestor"])
        config_yaml = pulumi.Output.all(data.redis.host, data.buckets["feast"]).apply(
            lambda a: feature_store_yaml(a[0], data.redis.port, a[1], data.redis.tls))
        secret = k8s.core.v1.Secret(
            f"{name}-redis-secret", type="Opaque",
            metadata={"name": REDIS_SECRET, "namespace": NAMESPACE, "labels": labels("feast")},
            string_data={"token": data.redis.auth_token},
            # Rotated by runbooks/redis-auth-rotation.md without `pulumi up`; Pulumi must not revert it.
            opts=pulumi.ResourceOptions.merge(after_ns, pulumi.ResourceOptions(ignore_changes=["stringData", "data"])))
        config = k8s.core.v1.ConfigMap(
            f"{name}-repo-config", metadata={"name": CONFIG_MAP, "namespace": NAMESPACE, "labels": labels("feast")},
            data={"feature_store.yaml": config_yaml}, opts=after_ns)
        network_policies(NamespacePolicy(
            NAMESPACE,
            ingress=[IngressRule(CLIENT_NAMESPACES, (SERVER_PORT,))],
            egress=[EgressRule(vpc_cidr, (PORT_REDIS, PORT_KAFKA_IAM)), EgressRule(ANYWHERE, (PORT_HTTPS,))],
        ), self, [ns])

        self.release = helm_release(RELEASE, ctx, "feast-feature-server", NAMESPACE, server_values(ctx, config_yaml),
                                    self, depends_on=[ns, sa, secret, *(depends_on or [])])
        # The chart's Service exposes only the serving port; metrics get their own for the ServiceMonitor.
        k8s.core.v1.Service(
            f"{name}-metrics-service",
            metadata={"name": "feast-metrics", "namespace": NAMESPACE, "labels": labels("feast", "metrics")},
            spec={"selector": SELECTOR, "ports": [{"name": "metrics", "port": METRICS_PORT,
                                                   "targetPort": METRICS_PORT, "protocol": "TCP"}]},
            opts=after_ns)
        service_monitor("feast", NAMESPACE, labels("feast", "metrics"), "metrics", self,
                        depends_on=[ns, *(depends_on or [])])  # the monitoring release installs the CRD
        pod_disruption_budget("feast-feature-server", NAMESPACE, SELECTOR, cfg.replicas, self, [ns])

        repo_volume = {"name": "repo", "configMap": {"name": CONFIG_MAP}}
        repo_mount = {"name": "repo", "mountPath": REPO_DIR, "readOnly": True}
        image = ctx.bom.images["feast-feature-server"].ref
        k8s.batch.v1.CronJob(
            f"{name}-materialize",
            metadata={"name": FEAST_MATERIALIZE.name, "namespace": NAMESPACE, "labels": labels("feast", "materialize")},
            spec={
                "schedule": cfg.materialization_schedule,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 3600,
                    "template": {
                        "metadata": {"labels": labels("feast", "materialize")},
                        "spec": {
                            "serviceAccountName": WORKLOAD_IDENTITIES["feast"].service_account,
                            "restartPolicy": "Never",
                            "securityContext": pod_security_context(),
                            "nodeSelector": {NODE_ROLE_LABEL: "general"},
                            "containers": [{
                                "name": "materialize",
                                "image": image,
                                "command": ["/bin/sh", "-c",
                                            f'exec feast -c {REPO_DIR} materialize-incremental '
                                            '"$(date -u +%Y-%m-%dT%H:%M:%S)"'],
                                "env": [_redis_env(), {"name": "AWS_REGION", "value": ctx.cfg.region}],
                                "resources": resources(cfg.resources),
                                "securityContext": CONTAINER_SECURITY_CONTEXT,
                                "volumeMounts": [repo_mount, TMP_MOUNT],
                            }],
                            "volumes": [repo_volume, TMP_VOLUME],
                        },
                    },
                }},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, sa, secret, config]))

        # The stream ingestor of the (at most one) registered model that declares a stream
        # (`ModelSpec.stream`): it consumes that topic and pushes online features to Feast.
        stream = model_registry.stream()
        if stream is not None:
            ingestor_labels = {**labels("feast-stream-ingestor", "ingestor"), **INGESTOR_SELECTOR}
            k8s.apps.v1.Deployment(
                f"{name}-stream-ingestor",
                metadata={"name": FEAST_INGESTOR.name, "namespace": NAMESPACE, "labels": ingestor_labels},
                spec={
                    # One consumer per partition at most; per-card state is safe across replicas as long as
                    # producers key messages by card_id (docs/WORKLOADS.md).
                    "replicas": 1,
                    "selector": {"matchLabels": INGESTOR_SELECTOR},
                    "template": {
                        "metadata": {"labels": ingestor_labels},
                        "spec": {
                            "serviceAccountName": WORKLOAD_IDENTITIES["feast-ingestor"].service_account,
                            "securityContext": pod_security_context(),
                            "nodeSelector": {NODE_ROLE_LABEL: "general"},
                            "topologySpreadConstraints": zone_spread(INGESTOR_SELECTOR),
                            "containers": [{
                                "name": "ingestor",
                                "image": ingestor_image,
                                "command": ["python", "-m", stream.ingestor],
                                "env": [
                                    {"name": "KAFKA_BOOTSTRAP", "value": data.kafka.bootstrap_brokers_iam},
                                    {"name": "KAFKA_TOPIC", "value": stream.topic},
                                    {"name": "KAFKA_GROUP", "value": "feast-stream-ingestor"},
                                    {"name": "AWS_REGION", "value": ctx.cfg.region},
                                    {"name": "FEAST_REPO", "value": REPO_DIR},
                                    {"name": "METRICS_PORT", "value": str(INGESTOR_METRICS_PORT)},
                                    # With the Flink job on, it writes the online features; the ingestor keeps
                                    # the labelled-outcome metrics (false-positive rate, per-version F1).
                                    {"name": "PUSH_FEATURES",
                                     "value": "false" if ctx.cfg.workloads.flink.enabled else "true"},
                                    _redis_env(),
                                ],
                                "ports": [{"name": "metrics", "containerPort": INGESTOR_METRICS_PORT}],
                                "resources": resources(cfg.resources),
                                "securityContext": CONTAINER_SECURITY_CONTEXT,
                                "readinessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10},
                                "volumeMounts": [repo_mount, TMP_MOUNT],
                            }],
                            "volumes": [repo_volume, TMP_VOLUME],
                        },
                    },
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, ingestor_sa, secret, config]))
            pod_monitor("feast-stream-ingestor", NAMESPACE, INGESTOR_SELECTOR, "metrics", self,
                        depends_on=[ns, *(depends_on or [])])

        self.online_endpoint = f"{RELEASE}-feast-feature-server.{NAMESPACE}.svc.cluster.local"
        self.register_outputs({"onlineEndpoint": self.online_endpoint})
