"""Seldon Core 2 (Business Source License, see docs/WORKLOADS.md) with MLServer.

Four pinned charts: CRDs, setup (operator, ServerConfigs), runtime (scheduler, envoy, gateways,
dataflow; Kafka on MSK, traces to Jaeger over OTLP) and servers (the MLServer Server, running the
project's model-server image from the ECR repository created here, built from
docker/model-server/Dockerfile). Seldon's Kafka clients do not speak MSK IAM, so they use
SASL/SCRAM-SHA-512 over TLS (MSK port 9096) as the MSK user created by infra/aws/kafka.py: the
setup chart's `security.kafka.sasl` values name the user and the `seldon-kafka-sasl` Secret that
holds its password (key `password`). MSK brokers present Amazon Trust Services certificates, so no
broker CA Secret is needed and hostnames are verified (`https`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from contracts import model_registry
from contracts.cluster import MLFLOW_SERVER, MODEL_SERVER, SERVING_REDIS_SECRET, WORKLOAD_IDENTITIES
from contracts.models import Resources
from infra.workloads.args import WorkloadArgs
from infra.workloads.isolation import (
    ANYWHERE,
    PORT_HTTPS,
    PORT_KAFKA_SCRAM,
    PORT_REDIS,
    EgressRule,
    IngressRule,
    NamespacePolicy,
    PeerEgressRule,
    network_policies,
)
from infra.workloads.kube import (
    NODE_ROLE_LABEL,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD_SECCOMP,
    helm_release,
    labels,
    namespace,
    pod_monitor,
    service_account,
)
from infra.workloads.tracing import NAMESPACE as TRACING_NAMESPACE
from infra.workloads.tracing import OTLP_GRPC_PORT, OTLP_HTTP_PORT
from stacks.context import StackContext

NAMESPACE = MODEL_SERVER.namespace
DOCKERFILE = "docker/model-server/Dockerfile"
KAFKA_SASL_SECRET = "seldon-kafka-sasl"  # key `password`: the MSK SCRAM password of the Seldon user
KAFKA_SASL_PASSWORD_KEY = "password"
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"  # the only SCRAM mechanism MSK accepts
SERVER_NAME = MODEL_SERVER.name
SERVER_METRICS_PORT = 8082
# With parallel workers MLServer writes its Prometheus multiprocess files to `metrics_dir` (default: the
# working directory, the image's code directory, not writable); they go to a size-limited emptyDir at /tmp.
SERVER_TMP = "/tmp"
SERVER_METRICS_DIR = f"{SERVER_TMP}/mlserver-metrics"
# Namespaces that send inference traffic to envoy (in-cluster callers, the ALB through kube-system, and the
# load-test Job of infra/workloads/loadtest_job.py).
CALLER_NAMESPACES = ("feast", "ml-training", "kube-system", "loadtest")


def jaeger_otlp_endpoint() -> str:
    from infra.workloads.tracing import OTLP_GRPC_ENDPOINT

    return OTLP_GRPC_ENDPOINT


def _ecr_lifecycle() -> str:
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": "Keep the 30 newest images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30},
        "action": {"type": "expire"}}]})


@dataclass(frozen=True, kw_only=True)
class ModelServerRepositoryArgs:
    """Inputs of `ModelServerRepository` (settings from `workloads.modelServerRepository`)."""

    ctx: StackContext


class ModelServerRepository(pulumi.ComponentResource):
    """ECR repository of the model-server image (immutable tags, scan on push, KMS-encrypted)."""

    repository_url: pulumi.Output[str]
    image: pulumi.Output[str]

    def __init__(self, name: str, args: ModelServerRepositoryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:ModelServerRepository", name, None, opts)
        ctx = args.ctx
        image = ctx.bom.images["model-server"]
        repo_name = f"{ctx.prefix}/model-server"
        repo = aws.ecr.Repository(
            f"{name}-repo", name=repo_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            force_delete=ctx.cfg.workloads.model_server_repository.force_delete,
            tags=ctx.tags(repo_name, Dockerfile=DOCKERFILE),
            opts=pulumi.ResourceOptions(parent=self, protect=ctx.protect),
        )
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=repo.name, policy=_ecr_lifecycle(),
                                opts=pulumi.ResourceOptions(parent=self))
        self.repository_url = repo.repository_url
        self.image = repo.repository_url.apply(lambda url: f"{url}:{image.tag}")
        self.register_outputs({"repositoryUrl": self.repository_url, "image": self.image})


def kafka_security(username: str) -> dict[str, Any]:
    """Setup chart `security.kafka`: SASL_SSL with SCRAM; the password comes from `KAFKA_SASL_SECRET`."""
    if not username:
        raise ValueError("Seldon Kafka SCRAM username is empty")
    return {
        "protocol": "SASL_SSL",
        "sasl": {"mechanism": KAFKA_SASL_MECHANISM, "client": {
            "username": username, "secret": KAFKA_SASL_SECRET, "passwordPath": KAFKA_SASL_PASSWORD_KEY}},
        # No client certificate; brokers are validated against the system trust store.
        "ssl": {"client": {"secret": "", "brokerValidationSecret": "", "endpointIdentificationAlgorithm": "https"}},
    }


# The setup chart's pod-level securityContext values of the controller, the SeldonConfig components and the
# ServerConfigs (user 1000, runAsNonRoot); a seccomp profile is merged in because `restricted` needs one. The
# containers' own settings are not values of the chart: the runtime's overrides and the Servers' podSpecs
# carry them (below), the controller's come from the post-renderer (infra/workloads/postrender.py).
SETUP_POD_SECURITY_KEYS = ("scheduler", "pipelinegateway", "modelgateway", "hodometer", "envoy", "dataflow",
                           "serverConfig")
# The controller's container securityContext is hard-coded in the chart: patched after rendering.
SETUP_POSTRENDER = "scripts/helm-postrender-seldon-core-v2-setup"
# Runtime chart key -> the SeldonConfig component's container (setup chart 2.10.2, `_components-deployments.tpl`).
COMPONENT_CONTAINERS = {"scheduler": "scheduler", "envoy": "envoy", "dataflow": "dataflow-engine",
                        "modelgateway": "modelgateway", "pipelinegateway": "pipelinegateway"}
# The ServerConfigs' containers besides the server's own, merged by name with a Server's podSpec.
SERVER_SIDECARS = ("rclone", "agent")


def restricted_containers(*names: str) -> list[dict[str, Any]]:
    """Container entries that the operator merges by name over its config's, carrying what `restricted` needs."""
    return [{"name": name, "securityContext": RESTRICTED_CONTAINER} for name in names]


def _override_pod(component: str) -> dict[str, Any]:
    return {"containers": restricted_containers(COMPONENT_CONTAINERS[component])}


def setup_values(ctx: StackContext, brokers: pulumi.Input[str], username: str) -> dict[str, Any]:
    kafka = ctx.cfg.kafka
    return {
        **{key: {"securityContext": RESTRICTED_POD_SECCOMP} for key in SETUP_POD_SECURITY_KEYS},
        "controller": {"clusterwide": False, "securityContext": RESTRICTED_POD_SECCOMP},
        "kafka": {"bootstrap": brokers, "topicPrefix": "seldon",
                  "topics": {"replicationFactor": min(3, kafka.broker_count), "numPartitions": 4}},
        "security": {"kafka": kafka_security(username)},
        "opentelemetry": {"endpoint": jaeger_otlp_endpoint(), "protocol": "grpc", "disable": False,
                          "ratio": ctx.cfg.workloads.tracing.sampling_ratio},
        # Internal only: exposure goes through an ALB Ingress managed separately. (The setup chart has no
        # per-service `envoy.service.type` / `scheduler.service.type`; the runtime's serviceType values set them.)
        "services": {"defaultServiceType": "ClusterIP"},
        "hodometer": {"extraPublishUrls": "", "metricsLevel": "cluster"},
    }


def runtime_values(ctx: StackContext, brokers: pulumi.Input[str]) -> dict[str, Any]:
    replicas = ctx.cfg.workloads.seldon.replicas
    return {
        # Usage telemetry to Seldon off by default.
        "hodometer": {"disable": True},
        # The scheduler is one StatefulSet replica; the runtime chart has no replicas value for it.
        # Each override's podSpec is merged by the operator over the SeldonConfig's (containers by name): it
        # carries the container settings `restricted` requires, which the SeldonConfig leaves unset.
        "scheduler": {"serviceType": "ClusterIP", "podSpec": _override_pod("scheduler")},
        "envoy": {"replicas": replicas, "serviceType": "ClusterIP", "podSpec": _override_pod("envoy")},
        "dataflow": {"replicas": replicas, "podSpec": _override_pod("dataflow")},
        "modelgateway": {"replicas": replicas, "podSpec": _override_pod("modelgateway")},
        "pipelinegateway": {"replicas": replicas, "podSpec": _override_pod("pipelinegateway")},
        # No `config.tracingConfig`: the chart renders its `ratio` unquoted and the SeldonRuntime CRD types it
        # as a string, so the API server rejects it (docs/CONFORMANCE.md). The SeldonConfig that the setup
        # chart renders from `opentelemetry` (quoted) carries the same settings, and the runtime inherits them.
        "config": {
            "kafkaConfig": {"bootstrap": brokers, "topicPrefix": "seldon"},
            "serviceConfig": {"serviceType": "ClusterIP"},
        },
    }


def _millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else round(float(quantity) * 1000)


_BINARY = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def _mebibytes(quantity: str) -> float:
    unit = quantity[-2:]
    return float(quantity[:-2]) * _BINARY[unit] if unit in _BINARY else float(quantity) / 2**20


def server_resources(declared: list[Resources]) -> dict[str, dict[str, str]] | None:
    """The `mlserver` container's requests and limits: the sum of what each enabled model declares
    per replica (`ModelSpec.serving.resources`); None when no model declares any (the ServerConfig's
    defaults then apply)."""
    if not declared:
        return None

    def cpu(attr: str) -> str:
        return f"{sum(_millicores(getattr(r, attr)) for r in declared)}m"

    def memory(attr: str) -> str:
        return f"{round(sum(_mebibytes(getattr(r, attr)) for r in declared))}Mi"

    return {"requests": {"cpu": cpu("cpu_request"), "memory": memory("memory_request")},
            "limits": {"cpu": cpu("cpu_limit"), "memory": memory("memory_limit")}}


def online_store_env(ctx: StackContext, host: pulumi.Input[str], port: int, tls: bool) -> list[dict[str, Any]]:
    """What the runtimes need to read the online store (ml/serving/runtime_base.py): its URL, with the AUTH
    token expanded by the kubelet from the Secret's copy (`$(VAR)` refers to an earlier entry), and the
    client chosen in stack config."""
    scheme = "rediss" if tls else "redis"
    token = {"secretKeyRef": {"name": SERVING_REDIS_SECRET.name, "key": "token"}}
    return [
        {"name": "MLPLAT_ONLINE_STORE_TOKEN", "valueFrom": token},
        {"name": "MLPLAT_ONLINE_STORE_URL",
         "value": pulumi.Output.from_input(host).apply(lambda h: f"{scheme}://:$(MLPLAT_ONLINE_STORE_TOKEN)@{h}:{port}/0")},
        {"name": "MLPLAT_ONLINE_CLIENT", "value": ctx.cfg.workloads.seldon.online_client},
    ]


def servers_values(ctx: StackContext, image: pulumi.Input[str],
                   serving_samples: pulumi.Input[str] | None = None,
                   online_store: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`serving_samples`: where the runtimes write their sampled inputs (ml/serving/serving_log.py);
    `online_store`: the env of `online_store_env`."""
    # Every enabled model of the registry (contracts/model_registry.py) shares the one MLServer Server.
    models = ctx.cfg.models
    enabled = [(model_registry.get(name), models[name]) for name in models.names() if models[name].enabled]
    min_replicas = max([m.min_replicas for _, m in enabled] + [1])
    max_replicas = max([m.max_replicas for _, m in enabled] + [min_replicas])
    sized = server_resources([s.serving.resources for s, _ in enabled if s.serving.resources is not None])
    return {
        "mlserver": {
            "replicas": min_replicas, "minReplicas": min_replicas, "maxReplicas": max_replicas,
            "podSpec": {
                "serviceAccountName": WORKLOAD_IDENTITIES["model-serving"].service_account,
                # Seldon's agent sidecar talks to the Kubernetes API (storage secret, config) and needs the
                # IRSA web-identity token; the service account itself mounts no token by default.
                "automountServiceAccountToken": True,
                "nodeSelector": {NODE_ROLE_LABEL: "inference"},
                "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"seldon-server-name": SERVER_NAME}}}],
                # Appended to the ServerConfig's volumes, as the containers' volumeMounts and env are.
                "volumes": [{"name": "mlserver-tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                # Merged by name with the ServerConfig's containers: ours in `mlserver`, and what `restricted`
                # requires in all three.
                "containers": [{
                    "name": "mlserver", "image": image, "securityContext": RESTRICTED_CONTAINER,
                    # Serve the repository the agent fills (`MLSERVER_MODELS_DIR` of the ServerConfig, expanded by
                    # the kubelet), as MLServer's own image does, behind the request-size limit of our image's
                    # ENTRYPOINT (which names /mnt/models).
                    "command": ["python", "-m", "ml.serving.request_limit", "start", "$(MLSERVER_MODELS_DIR)"],
                    "volumeMounts": [{"name": "mlserver-tmp", "mountPath": SERVER_TMP}],
                    "env": [
                        {"name": "MLSERVER_METRICS_DIR", "value": SERVER_METRICS_DIR},
                        # Later entries win over the ServerConfig's (`MLSERVER_PARALLEL_WORKERS=1`): inference in
                        # the main process, as the image and the benchmarks run it. A parallel worker of MLServer
                        # 1.7.1 exits at start with the locked uvloop 0.23 (`asyncio.get_event_loop()` in
                        # mlserver/parallel/worker.py raises: no current event loop).
                        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
                        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"http://{jaeger_otlp_endpoint()}"},
                        {"name": "OTEL_SERVICE_NAME", "value": "mlserver"},
                        {"name": "MLPLAT_MLFLOW_TRACKING_URI", "value": _mlflow_uri()},
                        *([{"name": "MLPLAT_SERVING_SAMPLES", "value": serving_samples}] if serving_samples else []),
                        # No drift gauge, so no drift alert and no retrain, before this many observations.
                        {"name": "MLPLAT_DRIFT_MIN_SAMPLES",
                         "value": str(ctx.cfg.workloads.pipelines.retrain_min_samples)},
                        *(online_store or []),
                        # The Redis prediction cache of deterministic models (ml/serving/prediction_cache.py), in
                        # the online store's Redis.
                        {"name": "MLPLAT_PREDICTION_CACHE_TTL_S",
                         "value": str(ctx.cfg.workloads.prediction_cache.ttl_seconds)},
                        {"name": "MLPLAT_PREDICTION_CACHE_TIMEOUT_MS",
                         "value": str(ctx.cfg.workloads.prediction_cache.timeout_ms)},
                    ],
                    **({"resources": sized} if sized else {}),
                }, *restricted_containers(*SERVER_SIDECARS)],
            },
        },
        # Triton is not used by the reference models.
        # Its pod spec meets `restricted` too, should someone scale it up.
        "triton": {"replicas": 0, "minReplicas": 0, "maxReplicas": 0,
                   "podSpec": {"containers": restricted_containers(*SERVER_SIDECARS, "triton")}},
    }


def _mlflow_uri() -> str:
    from infra.workloads.mlflow import tracking_uri

    return tracking_uri()


@dataclass(frozen=True, kw_only=True)
class SeldonArgs(WorkloadArgs):
    """Inputs of `Seldon`."""

    image: pulumi.Input[str]
    """The model-server image (`ModelServerRepository.image`) the MLServer Server runs."""


class Seldon(pulumi.ComponentResource):
    def __init__(self, name: str, args: SeldonArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Seldon", name, None, opts)
        ctx, data, vpc_cidr, image, depends_on = args.ctx, args.data, args.vpc_cidr, args.image, args.depends_on
        ns = namespace(NAMESPACE, self)
        sa = service_account("model-serving", self, ns, data.role_arns["model-serving"])
        brokers = data.kafka.bootstrap_brokers_scram
        kafka_secret = k8s.core.v1.Secret(
            f"{name}-kafka-sasl-secret", type="Opaque",
            metadata={"name": KAFKA_SASL_SECRET, "namespace": NAMESPACE, "labels": labels("seldon")},
            string_data={KAFKA_SASL_PASSWORD_KEY: data.kafka.scram_password},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]))
        redis_secret = k8s.core.v1.Secret(
            f"{name}-online-store-secret", type="Opaque",
            metadata={"name": SERVING_REDIS_SECRET.name, "namespace": NAMESPACE, "labels": labels("seldon")},
            string_data={"token": data.redis.auth_token},
            # Rotated with Feast's copy by runbooks/redis-auth-rotation.md; Pulumi must not revert it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns], ignore_changes=["stringData", "data"]))
        network_policies(NamespacePolicy(
            NAMESPACE,
            ingress=[IngressRule(CALLER_NAMESPACES, (9000, 9002))],  # envoy HTTP/gRPC listeners
            egress=[EgressRule(vpc_cidr, (PORT_KAFKA_SCRAM, PORT_REDIS)), EgressRule(ANYWHERE, (PORT_HTTPS,)),
                    # MLflow registry (models:/ URIs), Jaeger OTLP: Services of other namespaces.
                    PeerEgressRule((MLFLOW_SERVER.namespace,), (5000,)),
                    PeerEgressRule((TRACING_NAMESPACE,), (OTLP_GRPC_PORT, OTLP_HTTP_PORT))],
        ), self, [ns])
        extra = depends_on or []
        crds = helm_release("seldon-core-v2-crds", ctx, "seldon-core-v2-crds", NAMESPACE, {}, self,
                            depends_on=[ns, *extra])
        setup = helm_release("seldon-core-v2-setup", ctx, "seldon-core-v2-setup", NAMESPACE,
                             setup_values(ctx, brokers, data.kafka.scram_username), self,
                             depends_on=[crds, kafka_secret], postrender=SETUP_POSTRENDER)
        runtime = helm_release("seldon-core-v2-runtime", ctx, "seldon-core-v2-runtime", NAMESPACE,
                               runtime_values(ctx, brokers), self, depends_on=[setup])
        self.servers = helm_release("seldon-core-v2-servers", ctx, "seldon-core-v2-servers", NAMESPACE,
                                    servers_values(ctx, image, pulumi.Output.from_input(data.buckets["models"]).apply(
                                        lambda b: f"s3://{b}/serving-samples"),
                                        online_store_env(ctx, data.redis.host, data.redis.port, data.redis.tls)),
                                    self, depends_on=[runtime, sa, redis_secret])
        self.releases = [crds, setup, runtime, self.servers]
        monitors = {
            "seldon-agent": ({"app.kubernetes.io/name": "seldon-server"}, "metrics"),
            "seldon-mlserver": ({"app.kubernetes.io/name": "seldon-server"}, "server-metrics"),
            "seldon-pipelinegateway": ({"app.kubernetes.io/name": "seldon-pipelinegateway"}, "metrics"),
            # No modelgateway monitor: at 2.10.2 it exposes only its health port (no metrics endpoint).
        }
        for mon, (selector, port) in monitors.items():
            # `extra` holds the monitoring release, which installs the PodMonitor CRD.
            pod_monitor(mon, NAMESPACE, selector, port, self, depends_on=[ns, *extra])
        k8s.apiextensions.CustomResource(
            "podmonitor-seldon-envoy", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": "seldon-envoy", "namespace": NAMESPACE, "labels": labels("seldon-envoy")},
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": "seldon-envoy"}},
                  "namespaceSelector": {"matchNames": [NAMESPACE]},
                  "podMetricsEndpoints": [{"port": "envoy-stats", "path": "/stats/prometheus", "interval": "15s"}]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, *extra]))
        self.inference_endpoint = f"seldon-mesh.{NAMESPACE}.svc.cluster.local"
        self.register_outputs({"inferenceEndpoint": self.inference_endpoint, "server": SERVER_NAME})
