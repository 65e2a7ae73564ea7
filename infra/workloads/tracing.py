"""Jaeger v2 (OpenTelemetry-collector based; Jaeger v1 reached end of life on 2025-12-31).

OTLP gRPC (4317) and HTTP (4318) receivers; storage from typed config: a Badger store on a
persistent volume (dev/staging) or an external OpenSearch cluster (prod) with daily indices and an
index-cleaner CronJob enforcing `retentionDays`. MLServer and Seldon export to `OTLP_GRPC_ENDPOINT`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.workloads.isolation import ANYWHERE, PORT_HTTPS, EgressRule, IngressRule, NamespacePolicy, network_policies
from infra.workloads.kube import (
    NODE_ROLE_LABEL,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD_SECCOMP,
    helm_release,
    labels,
    namespace,
    service_monitor,
)
from stacks.context import StackContext
from stacks.schema import TracingConfig

NAMESPACE = "tracing"
RELEASE = "jaeger"
OTLP_GRPC_PORT, OTLP_HTTP_PORT, QUERY_PORT, ADMIN_PORT = 4317, 4318, 16686, 8888
OTLP_GRPC_ENDPOINT = f"{RELEASE}.{NAMESPACE}.svc.cluster.local:{OTLP_GRPC_PORT}"
PVC_NAME = "jaeger-badger"
INDEX_PREFIX = "jaeger-main"  # OpenSearch indices: <prefix>-jaeger-span-YYYY-MM-DD, ...
SENDER_NAMESPACES = ("seldon", "feast", "mlflow", "ml-training", "monitoring")


def jaeger_config(cfg: TracingConfig) -> dict[str, Any]:
    """The Jaeger v2 (collector) configuration: receivers -> batch -> storage, plus the query UI."""
    retention = f"{cfg.retention_days * 24}h"
    if cfg.storage == "opensearch":
        backend = {"opensearch": {
            "server_urls": [cfg.opensearch_url],
            "indices": {"index_prefix": INDEX_PREFIX,
                        "spans": {"date_layout": "2006-01-02", "rollover_frequency": "day"},
                        "services": {"date_layout": "2006-01-02", "rollover_frequency": "day"}},
        }}
    else:
        backend = {"badger": {"directories": {"keys": "/badger/keys", "values": "/badger/values"},
                              "ephemeral": False, "ttl": {"spans": retention}}}
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": {"level": "detailed", "readers": [{"pull": {"exporter": {"prometheus": {
                "host": "0.0.0.0", "port": ADMIN_PORT}}}}]}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": "0.0.0.0:13133"}},
            "jaeger_query": {"storage": {"traces": "main_store"}},
            "jaeger_storage": {"backends": {"main_store": backend}},
        },
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                                             "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"}}}},
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "main_store"}},
    }


def jaeger_values(ctx: StackContext) -> dict[str, Any]:
    cfg = ctx.cfg.workloads.tracing
    values: dict[str, Any] = {
        "userconfig": jaeger_config(cfg),
        "jaeger": {
            "replicas": 1,
            "nodeSelector": {NODE_ROLE_LABEL: "general"},
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            # Merged with the chart's user 10001: `restricted` needs a seccomp profile.
            "podSecurityContext": RESTRICTED_POD_SECCOMP,
        },
    }
    if cfg.storage == "opensearch":
        # The index cleaner speaks the Elasticsearch API, which OpenSearch serves.
        values["storage"] = {"type": "elasticsearch", "elasticsearch": {"url": cfg.opensearch_url}}
        values["esIndexCleaner"] = {
            "enabled": True, "numberOfDays": cfg.retention_days,
            # The cleaner matches `<prefix>-jaeger-span-YYYY-MM-DD`: without the collector's prefix it
            # deletes nothing (jaeger v2.19.0 cmd/es-index-cleaner, docs/CONFORMANCE.md).
            "cmdlineParams": {"index-prefix": INDEX_PREFIX},
            # The chart's cleaner runs as user 1000 and sets nothing else that `restricted` requires.
            "podSecurityContext": {**RESTRICTED_POD_SECCOMP, "runAsNonRoot": True},
            "securityContext": RESTRICTED_CONTAINER}
    else:
        # Badger on one volume: a single replica owns it.
        values["jaeger"]["extraVolumes"] = [{"name": "badger", "persistentVolumeClaim": {"claimName": PVC_NAME}}]
        values["jaeger"]["extraVolumeMounts"] = [{"name": "badger", "mountPath": "/badger"}]
    return values


@dataclass(frozen=True, kw_only=True)
class TracingArgs:
    """Inputs of `Tracing` (settings from `workloads.tracing`)."""

    ctx: StackContext
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """What the Jaeger release waits for (add-ons, monitoring CRDs)."""


class Tracing(pulumi.ComponentResource):
    otlp_grpc_endpoint: str

    def __init__(self, name: str, args: TracingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Tracing", name, None, opts)
        ctx, depends_on = args.ctx, args.depends_on
        cfg = ctx.cfg.workloads.tracing
        ns = namespace(NAMESPACE, self)
        deps: list[pulumi.Resource] = [ns, *(depends_on or [])]
        if cfg.storage == "persistentVolume":
            deps.append(k8s.core.v1.PersistentVolumeClaim(
                f"{name}-badger", metadata={"name": PVC_NAME, "namespace": NAMESPACE, "labels": labels("jaeger")},
                spec={"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3-encrypted",
                      "resources": {"requests": {"storage": f"{cfg.storage_gib}Gi"}}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns], protect=ctx.protect)))
        egress = [EgressRule(ANYWHERE, (PORT_HTTPS,))] if cfg.storage == "opensearch" else []
        network_policies(NamespacePolicy(
            NAMESPACE, ingress=[IngressRule(SENDER_NAMESPACES, (OTLP_GRPC_PORT, OTLP_HTTP_PORT, QUERY_PORT))],
            egress=egress), self, [ns])
        self.release = helm_release(RELEASE, ctx, "jaeger", NAMESPACE, jaeger_values(ctx), self, depends_on=deps)
        k8s.core.v1.Service(
            f"{name}-metrics-service",
            metadata={"name": "jaeger-metrics", "namespace": NAMESPACE, "labels": labels("jaeger", "metrics")},
            spec={"selector": {"app.kubernetes.io/name": "jaeger", "app.kubernetes.io/instance": RELEASE},
                  "ports": [{"name": "metrics", "port": ADMIN_PORT, "targetPort": ADMIN_PORT, "protocol": "TCP"}]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]))
        service_monitor("jaeger", NAMESPACE, labels("jaeger", "metrics"), "metrics", self, depends_on=deps)
        self.otlp_grpc_endpoint = OTLP_GRPC_ENDPOINT
        self.register_outputs({"otlpGrpcEndpoint": OTLP_GRPC_ENDPOINT})
