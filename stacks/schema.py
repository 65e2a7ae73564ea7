"""Typed configuration schema of one platform stack (`stacks/Pulumi.<env>.yaml`).

Structure, types, ranges and allowed values live here; rules that relate several keys live in
`stacks/rules.py`. Every model forbids unknown keys. Keys are camelCase in YAML (Pulumi convention)
and snake_case in Python. Field descriptions are the source of docs/CONFIG.md.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic.alias_generators import to_camel

from contracts import model_registry
from contracts.models import ModelSpec

NAMESPACE = "mlplatform"


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Section(BaseModel):
    """Base of every config object: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, use_enum_values=True
    )


K8sName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")]
Cidr = IPv4Network


def _prefix_between(low: int, high: int, what: str) -> AfterValidator:
    def check(network: IPv4Network) -> IPv4Network:
        if not low <= network.prefixlen <= high:
            raise ValueError(f"AWS accepts /{low} to /{high} for a {what}, got /{network.prefixlen}")
        return network
    return AfterValidator(check)


# AWS accepts VPC and subnet IPv4 blocks from /16 (65,536 addresses) to /28 (16).
VpcCidr = Annotated[IPv4Network, _prefix_between(16, 28, "VPC")]
SubnetCidr = Annotated[IPv4Network, _prefix_between(16, 28, "subnet")]
# A region code as AWS writes it: eu-west-1, us-gov-west-1, ap-southeast-2.
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")]
# An EC2 instance type: family (with generation and attributes) dot size, e.g. m6i.xlarge, p4d.24xlarge.
InstanceType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
# A Kubernetes resource quantity: 250m, 1, 0.5, 512Mi, 1Gi, 1e3.
Quantity = Annotated[str, StringConstraints(pattern=r"^(\d+(\.\d*)?|\.\d+)([eE]\d+|m|[kMGTPE]i?|Ki)?$")]
# A Kubernetes CronJob schedule: five fields, or a macro.
Schedule = Annotated[str, StringConstraints(
    pattern=r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|([0-9*/,?A-Za-z-]+\s+){4}[0-9*/,?A-Za-z-]+)$")]
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY = rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$"
_LABEL_VALUE = rf"^({_LABEL_NAME})?$"


def _node_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax: EKS refuses a node group whose labels the API server would reject."""
    for key, value in labels.items():
        if not re.match(_LABEL_KEY, key):
            raise ValueError(f"label key {key!r} is not [prefix/]name (name: <= 63 of A-Za-z0-9-_., "
                             "alphanumeric at both ends)")
        if not re.match(_LABEL_VALUE, value):
            raise ValueError(f"label {key}={value!r}: a value is empty or <= 63 of A-Za-z0-9-_. with "
                             "alphanumeric ends")
    return labels


def _aws_tags(tags: dict[str, str]) -> dict[str, str]:
    """What AWS accepts as user tags: keys 1-128 characters, not `aws:`; values <= 256; <= 50 tags per
    resource, of which the platform itself sets up to 10."""
    if len(tags) > 40:
        raise ValueError(f"{len(tags)} tags; AWS allows 50 per resource and the platform sets up to 10, so at most 40")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128:
            raise ValueError(f"tag key {key[:40]!r}... is {len(key)} characters; AWS allows 1 to 128")
        if key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r}: the aws: prefix is reserved for AWS")
        if len(value) > 256:
            raise ValueError(f"tag {key!r} has a {len(value)}-character value; AWS allows 256")
    return tags
# CloudWatch Logs accepts only these retention periods.
LogRetentionDays = Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653]
InterfaceEndpoint = Literal["ecr.api", "ecr.dkr", "sts", "logs", "ec2", "elasticloadbalancing", "autoscaling"]
ControlPlaneLog = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]


class FlowLogs(Section):
    enabled: bool = Field(True, description="Send VPC flow logs (all traffic) to CloudWatch Logs.")
    retention_days: LogRetentionDays = Field(90, description="Retention of the flow-log group in days.")


class NetworkConfig(Section):
    vpc_cidr: VpcCidr = Field(description="IPv4 CIDR of the VPC (/16 to /28).")
    availability_zones: list[str] = Field(
        min_length=1, max_length=6, description="Availability zones, one subnet of each tier per zone (prod: 3)."
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        description="`single`: one NAT gateway for the VPC (cheap); `perAz`: one per zone (prod: required)."
    )
    public_subnet_cidrs: list[SubnetCidr] = Field(description="Public subnets (load balancers, NAT), one per zone.")
    private_subnet_cidrs: list[SubnetCidr] = Field(description="Private subnets (EKS nodes and pods), one per zone.")
    isolated_subnet_cidrs: list[SubnetCidr] = Field(
        description="Isolated subnets without internet route (Redis, MSK, RDS), one per zone."
    )
    flow_logs: FlowLogs = Field(default_factory=FlowLogs, description="VPC flow logs.")
    interface_endpoints: list[InterfaceEndpoint] = Field(
        default_factory=list,
        description="AWS interface VPC endpoints to create (the S3 gateway endpoint is always created).",
    )


class ClusterConfig(Section):
    kubernetes_version: str | None = Field(
        None, description="EKS Kubernetes version; must be in the BOM's supported set. Default: the BOM default."
    )
    endpoint_public_access: bool = Field(
        False, description="Expose the API server endpoint publicly (always also private)."
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list, max_length=40,
        description="CIDRs allowed to reach a public endpoint (prod: required, no 0.0.0.0/0; public ranges; <= 40).",
    )
    log_types: list[ControlPlaneLog] = Field(
        default_factory=lambda: ["api", "audit", "authenticator"],
        description="Control-plane log types sent to CloudWatch (api, audit, authenticator required).",
    )
    log_retention_days: LogRetentionDays = Field(90, description="Retention of the control-plane log group.")
    admin_role_arns: list[Annotated[str, StringConstraints(pattern=r"^arn:aws:iam::\d{12}:role/.+$")]] = Field(
        default_factory=list, description="IAM roles granted cluster-admin through EKS access entries."
    )
    secrets_key_deletion_window_days: int = Field(
        30, ge=7, le=30,
        description="Waiting period before the secrets-encryption KMS key is deleted (>= the tier minimum).",
    )
    volume_reclaim_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="Reclaim policy of the default StorageClass `gp3-encrypted`: `Retain` keeps a volume "
        "(Prometheus, Jaeger data) after its claim is deleted (prod: required)."
    )


class NodeGroupConfig(Section):
    role: Literal["system", "general", "inference", "gpu"] = Field(
        description="`system`: critical add-ons (tainted); `general`: platform services; `inference`: model "
        "servers (compute optimised); `gpu`: GPU workloads (tainted nvidia.com/gpu)."
    )
    instance_types: list[InstanceType] = Field(
        min_length=1, description="EC2 instance types (gpu: GPU families only).")
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field("ON_DEMAND", description="SPOT is allowed in dev only.")
    min_size: int = Field(ge=0, le=1000, description="Minimum node count.")
    desired_size: int = Field(ge=0, le=1000, description="Initial node count (min <= desired <= max).")
    max_size: int = Field(ge=1, le=1000, description="Maximum node count (autoscaler bound).")
    disk_size_gib: int = Field(50, ge=20, le=2000, description="Encrypted gp3 root volume size in GiB.")
    labels: Annotated[dict[str, str], AfterValidator(_node_labels)] = Field(
        default_factory=dict, description="Extra Kubernetes node labels.")


_DAY = "(mon|tue|wed|thu|fri|sat|sun)"
_HH24MI = "([01][0-9]|2[0-3]):[0-5][0-9]"
# AWS window formats: daily hh24:mi-hh24:mi, weekly ddd:hh24:mi-ddd:hh24:mi (UTC). Durations and overlaps
# are checked in stacks/rules.py.
_DAILY_WINDOW = rf"^{_HH24MI}-{_HH24MI}$"
_WEEKLY_WINDOW = rf"^{_DAY}:{_HH24MI}-{_DAY}:{_HH24MI}$"


class RedisConfig(Section):
    node_type: Annotated[str, StringConstraints(pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")] = Field(
        description="ElastiCache node type."
    )
    replicas_per_shard: int = Field(ge=0, le=5, description="Read replicas per shard (staging/prod: >= 1).")
    multi_az: bool = Field(description="Multi-AZ with automatic failover (staging/prod: required).")
    snapshot_retention_days: int = Field(ge=0, le=35, description="Daily snapshot retention (prod: >= 7).")
    snapshot_window: Annotated[str, StringConstraints(pattern=_DAILY_WINDOW)] = Field(
        "03:00-04:00", description="Daily snapshot window (UTC, hh24:mi-hh24:mi, >= 60 minutes)."
    )
    maintenance_window: Annotated[str, StringConstraints(pattern=_WEEKLY_WINDOW)] = Field(
        "sun:05:00-sun:06:00", description="Weekly maintenance window (UTC, ddd:hh24:mi-ddd:hh24:mi, 60 minutes to "
        "24 hours); must not overlap the snapshot window."
    )
    log_retention_days: LogRetentionDays = Field(30, description="Retention of the slow-log group in days.")
    final_snapshot: bool = Field(
        True, description="Take a final snapshot `<group>-final` when the replication group is deleted "
        "(prod: required)."
    )
    apply_immediately: bool = Field(
        False, description="Apply changes at once instead of in the maintenance window (prod: false)."
    )


class KafkaTopic(Section):
    name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9._-]{1,249}$")] = Field(description="Topic name.")
    partitions: int = Field(6, ge=1, le=1000, description="Partition count.")
    replication_factor: int = Field(3, ge=1, le=10, description="Replication factor (<= broker count).")


class KafkaConfig(Section):
    broker_count: int = Field(ge=1, le=90, description="Broker count; a multiple of the number of zones.")
    instance_type: Annotated[str, StringConstraints(pattern=r"^kafka\.[a-z0-9]+\.[a-z0-9]+$")] = Field(
        description="MSK broker instance type."
    )
    ebs_volume_gib: int = Field(ge=1, le=16384, description="Initial EBS volume per broker in GiB.")
    max_ebs_volume_gib: int = Field(ge=1, le=16384, description="Storage auto-scaling ceiling per broker in GiB.")
    log_retention_days: LogRetentionDays = Field(30, description="Retention of the broker log group.")
    enhanced_monitoring: Literal["DEFAULT", "PER_BROKER", "PER_TOPIC_PER_BROKER", "PER_TOPIC_PER_PARTITION"] = Field(
        "PER_TOPIC_PER_BROKER", description="Level of the MSK CloudWatch metrics (`DEFAULT` is free, finer levels "
        "are billed per metric)."
    )
    topics: list[KafkaTopic] = Field(
        default_factory=lambda: [KafkaTopic(name=topic) for topic in model_registry.stream_topics()],
        description="Topics created in the MSK cluster with their partitions and replication factor (clients may not "
        "create topics; IAM grants are scoped to these).",
    )


class StorageConfig(Section):
    noncurrent_version_expiration_days: int = Field(
        30, ge=1, le=3650, description="Days before non-current object versions expire."
    )
    abort_incomplete_multipart_days: int = Field(7, ge=1, le=365, description="Days before incomplete uploads abort.")
    access_logging: bool = Field(False, description="Server access logs to a log bucket (prod: required).")
    force_destroy: bool = Field(False, description="Allow deleting non-empty buckets (dev only).")


class DatabaseConfig(Section):
    instance_class: Annotated[str, StringConstraints(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")] = Field(
        description="RDS instance class."
    )
    allocated_storage_gib: int = Field(ge=20, le=65536, description="Initial gp3 storage in GiB.")
    max_allocated_storage_gib: int = Field(ge=20, le=65536, description="Storage auto-scaling ceiling in GiB.")
    multi_az: bool = Field(description="Multi-AZ standby (prod: required).")
    backup_retention_days: int = Field(ge=0, le=35, description="Automated backup retention (prod: >= 7).")
    deletion_protection: bool = Field(description="RDS deletion protection (prod: required).")
    performance_insights: bool = Field(True, description="Performance Insights (KMS-encrypted).")
    backup_window: Annotated[str, StringConstraints(pattern=_DAILY_WINDOW)] = Field(
        "01:00-02:00", description="Daily backup window (UTC, hh24:mi-hh24:mi, >= 30 minutes); must not overlap "
        "maintenance."
    )
    maintenance_window: Annotated[str, StringConstraints(pattern=_WEEKLY_WINDOW)] = Field(
        "sun:02:30-sun:03:30", description="Weekly maintenance window (UTC, ddd:hh24:mi-ddd:hh24:mi, >= 30 "
        "minutes)."
    )
    log_retention_days: LogRetentionDays = Field(30, description="Retention of the exported PostgreSQL logs.")
    final_snapshot: bool = Field(
        True, description="Take a final snapshot `<identifier>-final` when the instance is deleted (prod: required)."
    )
    delete_automated_backups: bool = Field(
        False, description="Delete the automated backups together with the instance (prod: false)."
    )
    apply_immediately: bool = Field(
        False, description="Apply changes at once instead of in the maintenance window (prod: false)."
    )


class Resources(Section):
    cpu_request: Quantity = Field("250m", description="CPU request (a Kubernetes quantity, <= the limit).")
    cpu_limit: Quantity = Field("1", description="CPU limit.")
    memory_request: Quantity = Field("512Mi", description="Memory request (a Kubernetes quantity, <= the limit).")
    memory_limit: Quantity = Field("1Gi", description="Memory limit.")


class ServiceConfig(Section):
    enabled: bool = Field(True, description="Install this workload.")
    replicas: int = Field(1, ge=1, le=20, description="Replicas (prod: >= 2 for MLflow and Feast).")
    resources: Resources = Field(default_factory=Resources, description="Container resources.")


_NAMESPACE = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


def _own_pg_name(name: str) -> str:
    """A PostgreSQL name that needs no quoting and is none of the instance's own."""
    # The instance's own, MLflow's (database and master login) and Kubeflow Pipelines' databases.
    if name in ("postgres", "rdsadmin", "mlflow", "mlpipeline", "cachedb", "metadb") or name.startswith(
            ("template", "pg_", "rds")):
        raise ValueError(f"{name!r} is a name the RDS instance or another workload uses; choose the endpoint's own")
    return name


_PG_NAME = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$"), AfterValidator(_own_pg_name)]


class FeedbackConfig(ServiceConfig):
    replicas: int = Field(1, ge=1, le=20, description="Replicas of the feedback endpoint (prod: >= 2, with a "
                          "PodDisruptionBudget); they share one PostgreSQL database, so any number is consistent.")
    resources: Resources = Field(default_factory=lambda: Resources(
        cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="256Mi"),
        description="Container resources of the endpoint.")
    client_namespaces: list[_NAMESPACE] = Field(
        default_factory=list, description="Namespaces whose pods may post outcomes and served records (the "
        "applications that learn labels late or see clicks). The experiment controllers in "
        "`ml-training` and Prometheus are always allowed; nobody else.")
    database: _PG_NAME = Field("feedback", description="Its own database on the platform's RDS instance (not the "
                               "MLflow database): only the endpoint's login and the admin may connect to it.")
    username: _PG_NAME = Field("feedback", description="Its own login on the RDS instance (owner of `database`, "
                               "password generated by the stack; made by the endpoint's init container).")


class FeastConfig(ServiceConfig):
    materialization_schedule: Schedule = Field(
        "*/15 * * * *", description="Cron schedule of `feast materialize-incremental`."
    )


class ObservabilityConfig(Section):
    enabled: bool = Field(True, description="Install kube-prometheus-stack, dashboards and alert rules.")
    prometheus_retention: Annotated[str, StringConstraints(pattern=r"^\d+[dhw]$")] = Field(
        "15d", description="Prometheus TSDB retention."
    )
    prometheus_storage_gib: int = Field(50, ge=5, le=10000, description="Prometheus volume size in GiB.")
    prometheus_replicas: int = Field(1, ge=1, le=5, description="Prometheus replicas.")
    alertmanager_replicas: int = Field(2, ge=1, le=5, description="Alertmanager replicas (prod: >= 2).")
    runbook_base_url: Annotated[str, StringConstraints(pattern=r"^https://.+/$")] = Field(
        "https://github.com/example-org/mlplatform/blob/main/",
        description="Base URL of this repository; alert `runbook_url`s are `<base>runbooks/<alert>.md`.",
    )


class TracingConfig(Section):
    enabled: bool = Field(True, description="Install Jaeger v2 and export traces from serving.")
    storage: Literal["persistentVolume", "opensearch"] = Field(
        "persistentVolume", description="Trace storage: a Badger volume, or external OpenSearch (prod)."
    )
    opensearch_url: Annotated[str, StringConstraints(pattern=r"^https://")] | None = Field(
        None, description="OpenSearch endpoint when storage is `opensearch` (HTTPS)."
    )
    retention_days: int = Field(7, ge=1, le=90, description="Trace retention in days.")
    storage_gib: int = Field(20, ge=1, le=1000, description="Volume size for `persistentVolume` storage.")
    sampling_ratio: float = Field(
        0.1, ge=0, le=1, description="Share of requests Seldon Core 2 samples into traces (0 to 1)."
    )


class AddonsConfig(Section):
    aws_load_balancer_controller: bool = Field(True, description="Install aws-load-balancer-controller.")
    cluster_autoscaler: bool = Field(True, description="Install cluster-autoscaler.")
    metrics_server: bool = Field(True, description="Install metrics-server.")


class RepositoryConfig(Section):
    force_delete: bool = Field(
        False, description="Let `pulumi destroy` delete the ECR repository together with its images (prod: false)."
    )


_DATA_URI = r"^(sample|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?)$"


class PipelinesConfig(Section):
    enabled: bool = Field(
        True, description="Install Kubeflow Pipelines (the release's kustomize manifests, Argo Workflows from its "
        "chart), upload the models' training pipelines, schedule them and run each once on first install.")
    database: Literal["inCluster", "managed"] = Field(
        "inCluster", description="Where KFP keeps runs, metadata (MLMD) and cache: `inCluster` (KFP's own PostgreSQL "
        "on a volume) or `managed` (databases on the platform's RDS PostgreSQL, Multi-AZ where `database.multiAz`, "
        "reached through a TLS proxy in the namespace; prod: required).")
    ui: Literal["portForward", "internalLoadBalancer"] = Field(
        "portForward", description="How people reach the KFP UI: `portForward` (kubectl port-forward only) or "
        "`internalLoadBalancer` (an internal NLB reachable from the VPC; never internet-facing).")
    data_uri: Annotated[str, StringConstraints(pattern=_DATA_URI)] = Field(
        "sample", description="Training data of the scheduled and first-install runs: `sample` (the pipeline's first "
        "step generates the product's sample data) or an s3:// prefix holding the models' data files.")
    first_install_runs: bool = Field(
        True, description="Run every model's pipeline once when it is first installed, so that the models are "
        "trained, registered and served without a manual step.")
    retrain_on_drift: bool = Field(
        True, description="Start a run of a model's pipeline when its drift alert fires (Alertmanager -> the "
        "pipelines-retrain receiver).")
    retrain_cooldown_minutes: int = Field(
        360, ge=10, le=10080, description="Minimum time between two drift-triggered runs of one model, and after the "
        "retrain receiver starts (with the versions just published) before its first one.")
    retrain_min_samples: int = Field(
        1000, ge=100, le=1_000_000, description="Serving observations of a model's monitored inputs before its drift "
        "is measured: the runtime reports no PSI (so no drift alert fires and nothing is retrained) on fewer, and "
        "the drift-report CronJob judges no drift on fewer sampled rows (a few hundred requests are noise).")


class SeldonConfig(ServiceConfig):
    online_client: Literal["resp-async", "resp", "redis-asyncio"] = Field(
        "resp-async", description="Online feature store client of the model runtimes: `resp-async` and "
        "`redis-asyncio` serve other requests while a read crosses the network (`resp-async` for the least CPU "
        "per read: one write per event-loop pass for every read in flight), `resp` blocks the event loop for the "
        "round trip. The default follows the measurement at 0.2, 0.5 and 1 ms round trips "
        "(docs/BENCHMARKS.md, \"Online read across a network\"); re-measure with `mlplat bench store --url` from "
        "an inference pod.")


_GIT_URL = r"^(https://[^\s/]+/\S+|ssh://[^\s/]+/\S+|git@[^\s:]+:\S+)$"


def _git_branch(name: str) -> str:
    """The git ref-name rules a branch can break by accident (git check-ref-format)."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]{1,100}", name):
        raise ValueError(f"branch {name!r}: use 1-100 of A-Za-z0-9._/-")
    if name.startswith(("/", "-", ".")) or name.endswith(("/", ".", ".lock")) or ".." in name or "//" in name:
        raise ValueError(f"branch {name!r} is not a valid git branch name (no leading or trailing '/', '.' or '-', "
                         "no '..' or '//', no '.lock' suffix)")
    return name


def _deploy_path(path: str) -> str:
    """A relative folder inside the repository, without `.`/`..` parts."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]{1,100}", path):
        raise ValueError(f"path {path!r}: use 1-100 of A-Za-z0-9._/-")
    if path.startswith("/") or path.endswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"path {path!r} must be relative, without empty, '.' or '..' parts")
    return path


class GitOpsConfig(Section):
    enabled: bool = Field(
        True, description="Install Argo CD and deliver the model deployments (Seldon Models and Experiments) from "
        "the deploy tree in git: an ApplicationSet makes one Application per enabled model.")
    repo_url: Annotated[str, StringConstraints(pattern=_GIT_URL)] = Field(
        "https://github.com/example-org/mlplatform-deploy.git",
        description="Git repository of the deploy tree (https://, ssh:// or git@host:path). Credentials for a "
        "private repository are a repository Secret in the Argo CD namespace, made outside the stack.")
    branch: Annotated[str, AfterValidator(_git_branch)] = Field(
        "main", description="Branch Argo CD follows and promotions commit to (or open pull requests against).")
    path: Annotated[str, AfterValidator(_deploy_path)] = Field(
        "deploy", description="Folder of the deploy tree inside the repository; it holds `<environment>/<model>/`.")
    promotion: Literal["commit", "pullRequest"] = Field(
        "commit", description="How publishing a version changes the tree: `commit` (straight to `branch`) or "
        "`pullRequest` (a branch of its own that someone reviews and merges: the manual approval; prod: required).")
    credentials_secret: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")] | None = \
        Field(None, description="Secret in the pipelines' namespace (made outside the stack, never in the repository) "
              "with write access to the deploy repository: keys `username` and `password` (an HTTPS token) or "
              "`ssh-privatekey` and `known_hosts`. Mounted into the training pipeline's publish step only, which "
              "then writes the deploy tree itself; unset: the step writes nothing and `mlplat model promote` does.")


class FlinkConfig(Section):
    enabled: bool = Field(
        False, description="Install cert-manager and the Flink Kubernetes Operator (own namespaces; the operator "
        "watches only `flink-jobs`) and the streaming-features job (a FlinkDeployment): the stream model's online "
        "features computed from its MSK topic (IAM auth) with event time, written to the Feast online store. "
        "Off: the feast-stream-ingestor Deployment writes them.")
    parallelism: int = Field(2, ge=1, le=64, description="Job parallelism (at most the topic's partitions).")
    checkpoint_interval_seconds: int = Field(
        60, ge=10, le=3600, description="Checkpoint interval: Kafka offsets are committed and state is saved on "
        "each checkpoint (a restart replays at most this much).")
    allowed_lateness_seconds: int = Field(
        300, ge=0, le=86400, description="Events behind the watermark by at most this much are still counted; "
        "later ones go to the job's late side output (counted in a metric, alert MLPlatStreamingLateEvents).")
    job_manager: Resources = Field(default_factory=lambda: Resources(
        cpu_request="500m", cpu_limit="1", memory_request="1600Mi", memory_limit="1600Mi"),
        description="JobManager pod resources (Flink sizes its JVM from the memory).")
    task_manager: Resources = Field(default_factory=lambda: Resources(
        cpu_request="1", cpu_limit="1", memory_request="2Gi", memory_limit="2Gi"),
        description="TaskManager pod resources (JVM and the Python workers share the memory).")


_SPARK_MEMORY = Annotated[str, StringConstraints(pattern=r"^\d+(Mi|Gi)$")]


class SparkPodResources(Section):
    cpu_request: Quantity = Field("500m", description="CPU request (Spark's `coreRequest`).")
    cpu_limit: Quantity = Field("1", description="CPU limit (Spark's `coreLimit`).")
    memory: _SPARK_MEMORY = Field(
        "1Gi", description="Pod memory in whole Mi or Gi, request and limit alike (Spark sets both): the JVM heap "
        "gets 3/4, the overhead (off-heap, Python workers) the rest.")


def _executor_resources() -> SparkPodResources:
    return SparkPodResources(cpu_request="1", cpu_limit="1", memory="2Gi")


class SparkConfig(Section):
    enabled: bool = Field(
        False, description="Install the Spark Operator (its own namespace, jobs only in `spark-jobs`) and the "
        "scheduled Spark job that computes every model's batch feature views into the Feast offline store on S3 "
        "(Feast's materialization CronJob then loads them into the online store).")
    schedule: Schedule = Field(
        "30 1 * * *", description="Cron schedule of the batch-feature job (a ScheduledSparkApplication).")
    data_uri: Annotated[str, StringConstraints(pattern=_DATA_URI)] = Field(
        "sample", description="The models' data files the job reads: `sample` (generated on the driver) or an "
        "s3:// prefix (read through S3A; a bucket outside the platform needs a bucket policy for the job's role).")
    executor_instances: int = Field(2, ge=1, le=100, description="Spark executors of each run.")
    driver: SparkPodResources = Field(default_factory=SparkPodResources,
                                      description="Driver pod resources (default 500m-1 CPU, 1Gi).")
    executor: SparkPodResources = Field(default_factory=_executor_resources,
                                        description="Executor pod resources (default 1 CPU, 2Gi).")


class PredictionCacheConfig(Section):
    ttl_seconds: int = Field(300, ge=0, le=86_400, description="Seconds a cached prediction of a deterministic model "
                             "(the recommender) lives in the online store's Redis; 0 turns the cache off. A new "
                             "model version never reads an older one's entries (the key holds the version).")
    timeout_ms: float = Field(5.0, gt=0, le=100, description="Bound of one cache call; slower or failing calls "
                              "count as misses (the model answers) and the cache is skipped for a second.")


class RolloutsConfig(Section):
    enabled: bool = Field(
        True, description="Progressive rollouts on the cluster (`mlplat rollout start NAME VERSION --cluster`): "
        "the settings ConfigMap the rollout Job reads, one state ConfigMap per enabled model next to its Experiment, "
        "a Role that may only get and patch those Experiments and ConfigMaps, and egress to Prometheus. Needs "
        "`gitops` and `seldon` (the steps patch the Experiment, the promotion writes the deploy tree).")
    prometheus_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$")] = Field(
        "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090",
        description="Prometheus HTTP API the rollout's analysis queries (the rollback rules' PromQL).")
    deadline_hours: int = Field(24, ge=1, le=168, description="A rollout Job is stopped after this long "
                                "(activeDeadlineSeconds); its SIGTERM puts all traffic back on the champion.")


class WorkloadsConfig(Section):
    mlflow: ServiceConfig = Field(default_factory=ServiceConfig, description="MLflow tracking server and registry.")
    feast: FeastConfig = Field(default_factory=FeastConfig, description="Feast feature server and materialization.")
    seldon: SeldonConfig = Field(default_factory=SeldonConfig,
                                 description="Seldon Core 2 control plane and the MLServer model server.")
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig, description="Monitoring.")
    tracing: TracingConfig = Field(default_factory=TracingConfig, description="Tracing.")
    addons: AddonsConfig = Field(default_factory=AddonsConfig, description="Cluster add-ons installed by Helm.")
    pipelines: PipelinesConfig = Field(default_factory=PipelinesConfig,
                                       description="Kubeflow Pipelines and the models' training pipelines.")
    flink: FlinkConfig = Field(default_factory=FlinkConfig,
                               description="Flink Kubernetes Operator and the streaming-features job.")
    spark: SparkConfig = Field(default_factory=SparkConfig,
                               description="Spark Operator and the batch-feature Spark job.")
    prediction_cache: PredictionCacheConfig = Field(
        default_factory=PredictionCacheConfig, description="Redis cache of the model server's deterministic "
        "predictions (ml/serving/prediction_cache.py).")
    model_server_repository: RepositoryConfig = Field(
        default_factory=RepositoryConfig, description="ECR repository of the model-server image."
    )
    gitops: GitOpsConfig = Field(default_factory=GitOpsConfig,
                                 description="Argo CD and the deploy tree of the model deployments.")
    feedback: FeedbackConfig = Field(
        default_factory=FeedbackConfig, description="The feedback endpoint (outcomes of served requests, read by the "
        "A/B tests and bandits) in namespace `delivery`, stored in its own database on the RDS instance.")
    rollouts: RolloutsConfig = Field(default_factory=RolloutsConfig,
                                     description="Progressive rollouts on the cluster, run as Jobs.")


class Experiment(Section):
    champion_weight: int = Field(100, ge=0, le=100, description="Traffic share of the champion (percent).")
    challenger_weight: int = Field(0, ge=0, le=100, description="Traffic share of the challenger (percent).")


class BanditConfig(Section):
    enabled: bool = Field(False, description="Run a Thompson-sampling controller (`python -m "
                          "ml.delivery.experiments.cluster bandit`) that sets the Experiment's weights from clicks.")
    feedback_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] | None = Field(
        None, description="The feedback endpoint the controller reads outcomes from (default: the platform's own, "
        "the in-cluster Service of `workloads.feedback`; set it to use another endpoint).")
    floor: float = Field(0.05, ge=0, lt=0.5, description="Least share of traffic each variant keeps (exploration).")
    interval_seconds: int = Field(60, ge=5, le=86400, description="Seconds between weight updates.")
    metric: Literal["ctr", "success-rate"] = Field(
        "ctr", description="`ctr`: successes per request served (clicks); `success-rate`: successes per outcome.")
    started_at: int = Field(0, ge=0, description="Epoch seconds the bandit counts outcomes from (0: from the "
                            "controller's start); fixed, a restarted pod recomputes the same posteriors.")
    attribution_window_seconds: int = Field(
        1800, ge=0, le=7 * 86400, description="With `ctr`: a served request counts as an impression only once this "
        "long has passed since it was served (the time a click may take to arrive); newer requests, whose clicks "
        "may still come, are left out of the round instead of counting as non-clicks. 0: count every request at "
        "once.")


class ModelConfig(Section):
    enabled: bool = Field(True, description="Deploy this reference model.")
    min_replicas: int = Field(1, ge=0, le=100, description="Replicas of each of the model's Seldon Models (champion, "
                              "challenger): Seldon 2.10.2 runs exactly this many, its native model autoscaling "
                              "is off upstream (docs/WORKLOADS.md); size it with `mlplat capacity`.")
    max_replicas: int = Field(2, ge=1, le=100, description="Upper bound of the `mlserver` Server's native "
                              "autoscaling (the largest over the models); not a Model bound at Seldon 2.10.2.")
    experiment: Experiment = Field(default_factory=Experiment, description="Champion/challenger traffic split.")
    bandit: BanditConfig = Field(default_factory=BanditConfig, description="Thompson-sampling bandit over the "
                                 "Experiment's candidates (a controller Deployment in `ml-training`).")
    quality_gates: dict[str, float] = Field(
        default_factory=dict, description="Metric floors a version must reach to be promoted to `champion`."
    )
    training_schedule: Annotated[str, StringConstraints(pattern=r"^(\S+\s+){4}\S+$")] | None = Field(
        "0 3 * * 1", description="Cron schedule (UTC, five fields) of the model's recurring training-pipeline run "
        "on the cluster; null: no recurring run."
    )


class ModelsSection(Section):
    """`mlplatform:models`: one key per registered model (contracts/model_registry.py), so an unknown
    model name is rejected like any unknown key. Built by `models_config()` from the registry."""

    def __getitem__(self, name: str) -> ModelConfig:
        if name not in type(self).model_fields:
            raise KeyError(f"no model {name!r} in config; registered: {', '.join(type(self).model_fields)}")
        return getattr(self, name)

    def names(self) -> tuple[str, ...]:
        return tuple(type(self).model_fields)


def _model_config(spec: ModelSpec) -> type[ModelConfig]:
    """`ModelConfig` whose defaults (replicas, quality gates) are the model's spec."""
    fields = ModelConfig.model_fields
    return create_model(
        f"ModelConfig_{spec.name}", __base__=ModelConfig,
        min_replicas=(int, Field(spec.serving.min_replicas, ge=0, le=100,
                                 description=fields["min_replicas"].description)),
        max_replicas=(int, Field(spec.serving.max_replicas, ge=1, le=100,
                                 description=fields["max_replicas"].description)),
        quality_gates=(dict[str, float], Field(default_factory=lambda: dict(spec.quality_gates),
                                               description=fields["quality_gates"].description)),
    )


def models_config() -> type[ModelsSection]:
    """The `mlplatform:models` section for the models registered now (built-in + MLPLAT_MODEL_PLUGINS)."""
    fields: dict[str, Any] = {}
    for spec in model_registry.specs():
        config = _model_config(spec)
        fields[spec.name] = (config, Field(default_factory=config, description=spec.description))
    return create_model("ModelsConfig", __base__=ModelsSection, **fields)


ModelsConfig = models_config()


class SecretsConfig(Section):
    recovery_window_days: int = Field(
        30, ge=0, le=30, description="Days a deleted Secrets Manager secret (Redis AUTH token, RDS master user, MSK "
        "SCRAM user) stays recoverable: 7 to 30, or 0 to delete it at once so that a recreated stack can reuse the "
        "names (prod: >= 7)."
    )


class DataKeysConfig(Section):
    deletion_window_days: int = Field(
        30, ge=7, le=30,
        description="Waiting period before a data-domain KMS key (storage, database, cache, streaming, secrets) is "
        "deleted; a deletion can be cancelled within it (>= the tier minimum).",
    )


Cron = Annotated[str, StringConstraints(pattern=r"^(\S+\s+){4}\S+$")]


class DriftReportsConfig(Section):
    enabled: bool = Field(True, description="Run the drift-report CronJob (an Evidently report per enabled model).")
    schedule: Cron = Field("0 */6 * * *", description="Cron schedule (UTC) of the drift-report CronJob.")
    window_rows: int = Field(
        5000, ge=100, le=1_000_000,
        description="Serving inputs compared with the training reference: the newest N sampled rows.",
    )


class AutoRollbackConfig(Section):
    enabled: bool = Field(
        True, description="Roll a new model version back without a person when one of its rollback triggers fires "
        "(Alertmanager webhook -> the model-rollback receiver, runbooks/model-rollback.md)."
    )


class GovernanceConfig(Section):
    promotion: Literal["gates", "gatesAndApproval"] = Field(
        "gates", description="What promotes a version to `champion`: `gates` (the quality gates alone) or "
        "`gatesAndApproval` (gates plus `mlplat model approve`; unapproved versions are never published to a slot)."
    )
    drift_reports: DriftReportsConfig = Field(default_factory=DriftReportsConfig, description="Drift reports.")
    auto_rollback: AutoRollbackConfig = Field(
        default_factory=AutoRollbackConfig, description="Automatic rollback on a breached service level."
    )


class ServiceLevelsConfig(Section):
    latency_p99_ms: float = Field(
        10.0, gt=0, le=10000,
        description="Inference latency objective: p99 of one request in milliseconds, per model, as a client sees "
                    "it (`mlplat loadtest` exits 1 above it; the critical latency alert fires at 10 ms).")
    max_error_ratio: float = Field(
        0.001, ge=0, le=1,
        description="Largest share of failed requests (errors and non-2xx answers) `mlplat loadtest` accepts.")


class PlatformConfig(Section):
    """The whole stack. Top-level keys appear in the stack file as `mlplatform:<key>`."""

    environment: Environment = Field(description="Tier of this stack: dev, staging or prod.")
    region: Region = Field(description="AWS region (from `aws:region`).")
    protect_stateful_resources: bool = Field(
        False, description="`protect` + `retain_on_delete` on data resources (prod: required)."
    )
    tags: Annotated[dict[str, str], AfterValidator(_aws_tags)] = Field(
        default_factory=dict, description="Extra tags on every AWS resource (<= 40; AWS key and value limits).")
    secrets: SecretsConfig = Field(default_factory=SecretsConfig, description="Secrets Manager secrets.")
    data_keys: DataKeysConfig = Field(default_factory=DataKeysConfig, description="Customer-managed KMS data keys.")
    network: NetworkConfig = Field(description="VPC layout.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="EKS control plane.")
    node_groups: dict[K8sName, NodeGroupConfig] = Field(
        min_length=1, description="Managed node groups by name (system, general and inference roles required)."
    )
    redis: RedisConfig = Field(description="ElastiCache Redis (Feast online store).")
    kafka: KafkaConfig = Field(description="MSK (streaming features, Seldon dataflow).")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="S3 buckets.")
    database: DatabaseConfig = Field(description="RDS PostgreSQL (MLflow backend store).")
    workloads: WorkloadsConfig = Field(default_factory=WorkloadsConfig, description="In-cluster workloads.")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Reference models.")
    governance: GovernanceConfig = Field(
        default_factory=GovernanceConfig, description="Model governance: approval, drift reports, automatic rollback."
    )
    service_levels: ServiceLevelsConfig = Field(
        default_factory=ServiceLevelsConfig, description="Service-level objectives of inference (load tests).")
