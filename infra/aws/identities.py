"""Least-privilege IRSA roles of the workloads (`WORKLOAD_IDENTITIES`), built with `IrsaRole`.

What each identity may do is declared once in `WORKLOAD_GRANTS` (S3 prefixes and Kafka topics)
and rendered into IAM statements scoped to exact ARNs: bucket/prefix, the storage KMS key (only
through S3, enforced by the key policy), the MSK cluster, its topics and consumer groups. The two
cluster controllers get their documented permission sets with tag conditions
(infra/aws/controller_policies.py). The EBS CSI and VPC CNI roles live with their add-ons
(infra/aws/addons.py). `IrsaRole` refuses any statement the policy pack calls over-broad, and
`check_workload_grants` runs that check at declaration, when a first preview has no ARNs yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from contracts.flink import CONSUMER_GROUP_PREFIX as FLINK_GROUP_PREFIX
from infra.aws.controller_policies import cluster_autoscaler_statements, load_balancer_controller_statements
from infra.aws.interfaces import WORKLOAD_IDENTITIES
from infra.aws.irsa import IrsaRole, IrsaRoleArgs, OidcIssuer, assert_no_wildcard_admin
from infra.aws.kafka import group_arn, topic_arn
from infra.aws.storage import (
    DATASETS_REMOTE_PREFIX,
    FEAST_OFFLINE_PREFIX,
    FEAST_REGISTRY_KEY,
    MLFLOW_ARTIFACT_PREFIX,
    OPTIONAL_BUCKETS,
    PIPELINE_PACKAGES_PREFIX,
)
from stacks.context import StackContext

FLINK_STATE_PREFIX = "flink/"  # checkpoints and savepoints of the streaming job (infra/workloads/flink.py)

Access = Literal["read", "write"]
S3_READ = ["s3:GetObject", "s3:GetObjectVersion"]
S3_WRITE = [*S3_READ, "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
KMS_READ = ["kms:Decrypt", "kms:DescribeKey"]
KMS_WRITE = [*KMS_READ, "kms:GenerateDataKey"]


@dataclass(frozen=True)
class BucketGrant:
    bucket: str  # a `BUCKETS` key
    access: Access
    prefix: str = ""  # "" = the whole bucket


@dataclass(frozen=True)
class TopicGrant:
    access: Access
    group_prefix: str  # consumer groups the identity may join: "<prefix>*"


# identity -> what it may touch. Controllers are handled separately (they manage AWS resources).
WORKLOAD_GRANTS: dict[str, list[BucketGrant | TopicGrant]] = {
    "mlflow": [BucketGrant("mlflow", "write", MLFLOW_ARTIFACT_PREFIX)],  # proxied artifacts: only the server
    "feast": [BucketGrant("feast", "write")],  # offline store + registry
    "feast-ingestor": [BucketGrant("feast", "read", FEAST_REGISTRY_KEY.rsplit("/", 1)[0] + "/"),
                       TopicGrant("read", group_prefix="feast-")],
    # Read the slots; write only the sampled serving inputs (ml/serving/serving_log.py, drift reports).
    "model-serving": [BucketGrant("models", "read"), BucketGrant("models", "write", "serving-samples/")],
    # Dataset versions are read by content address (ml/datasets/content.py): training reads them, never writes.
    "training": [BucketGrant("mlflow", "write", MLFLOW_ARTIFACT_PREFIX), BucketGrant("feast", "read"),
                 BucketGrant("models", "write"), BucketGrant("datasets", "read", DATASETS_REMOTE_PREFIX)],
    # The one writer of dataset versions: `mlplat data push` from a job or CI runner with this identity.
    "dataset-writer": [BucketGrant("datasets", "write", DATASETS_REMOTE_PREFIX)],
    # Kubeflow Pipelines: the API server keeps pipeline packages and reads run artifacts; the steps write the
    # pipeline root and archived logs, the models' Parquet into the Feast offline store, and publish to the
    # Seldon slots (MLflow artifacts go through the tracking server), and read dataset versions by content
    # address; the UI reads artifacts and logs.
    "pipelines": [BucketGrant("pipelines", "read"), BucketGrant("pipelines", "write", PIPELINE_PACKAGES_PREFIX)],
    "pipeline-runner": [BucketGrant("pipelines", "write"), BucketGrant("feast", "write", FEAST_OFFLINE_PREFIX),
                        BucketGrant("models", "write"), BucketGrant("datasets", "read", DATASETS_REMOTE_PREFIX)],
    "pipelines-ui": [BucketGrant("pipelines", "read")],
    # The streaming-features Flink job: reads the transactions topic (consumer groups `mlplat-flink-*` only) and
    # keeps its checkpoints and savepoints under `flink/` of the Feast bucket.
    "flink-job": [TopicGrant("read", group_prefix=FLINK_GROUP_PREFIX),
                  BucketGrant("feast", "write", FLINK_STATE_PREFIX)],
    # The batch-feature Spark job writes the views' Parquet into the offline store (its S3A scratch files too).
    "spark-features": [BucketGrant("feast", "write", FEAST_OFFLINE_PREFIX)],
}
# Identities whose workload is optional: their role exists only when the stack installs it.
OPTIONAL_IDENTITY_SWITCHES: dict[str, Callable[[StackContext], bool]] = {
    "flink-job": lambda ctx: ctx.cfg.workloads.flink.enabled,
    "spark-features": lambda ctx: ctx.cfg.workloads.spark.enabled,
}
CONTROLLERS = ("cluster-autoscaler", "aws-load-balancer-controller")


def bucket_statements(sid: str, bucket_arn: str, key_arn: str, grant: BucketGrant) -> list[dict[str, Any]]:
    """List the granted prefix, read (or read/write) its objects, use the storage key accordingly."""
    write = grant.access == "write"
    listing: dict[str, Any] = {
        "Sid": f"{sid}List", "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation"] + (["s3:ListBucketMultipartUploads"] if write else []),
        "Resource": bucket_arn,
    }
    if grant.prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{grant.prefix}*"]}}
    return [
        listing,
        {"Sid": f"{sid}Objects", "Effect": "Allow", "Action": S3_WRITE if write else S3_READ,
         "Resource": f"{bucket_arn}/{grant.prefix}*"},
        {"Sid": f"{sid}Key", "Effect": "Allow", "Action": KMS_WRITE if write else KMS_READ, "Resource": key_arn},
    ]


def topic_statements(cluster_arn: str, topics: list[str], grant: TopicGrant) -> list[dict[str, Any]]:
    """MSK IAM: connect to this cluster, use exactly `topics`, join only the granted consumer groups."""
    data = ["kafka-cluster:ReadData"] if grant.access == "read" else ["kafka-cluster:ReadData",
                                                                      "kafka-cluster:WriteData"]
    return [
        {"Sid": "KafkaConnect", "Effect": "Allow",
         "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], "Resource": cluster_arn},
        {"Sid": "KafkaTopics", "Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", *data],
         "Resource": [topic_arn(cluster_arn, t) for t in topics]},
        {"Sid": "KafkaGroups", "Effect": "Allow",
         "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
         "Resource": group_arn(cluster_arn, f"{grant.group_prefix}*")},
    ]


def workload_statements(identity: str, bucket_arns: dict[str, str], key_arn: str, cluster_arn: str,
                        topics: list[str]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for i, grant in enumerate(WORKLOAD_GRANTS[identity]):
        if isinstance(grant, BucketGrant):
            sid = f"{grant.bucket.capitalize()}{grant.access.capitalize()}{i}"
            statements += bucket_statements(sid, bucket_arns[grant.bucket], key_arn, grant)
        else:
            statements += topic_statements(cluster_arn, topics, grant)
    return statements


def grants_exist(identity: str, bucket_arns: dict[str, object]) -> bool:
    """Whether every bucket `identity` is granted exists; only an optional bucket may be absent."""
    missing = {g.bucket for g in WORKLOAD_GRANTS[identity] if isinstance(g, BucketGrant)} - set(bucket_arns)
    if missing - set(OPTIONAL_BUCKETS):
        raise KeyError(f"{identity} is granted bucket(s) {sorted(missing)} that the storage layer does not create")
    return not missing


def check_workload_grants(topics: list[str]) -> None:
    """Every identity's statements, rendered with placeholder ARNs, through the over-broad-grant check.

    The real ARNs (KMS key, MSK cluster) are unknown in a first preview, where `apply` never runs; the
    statements' actions and ARN shapes are not, so this runs at declaration, in every preview."""
    placeholders = {b: f"arn:aws:s3:::{b}-bucket" for grants in WORKLOAD_GRANTS.values() for g in grants
                    if isinstance(g, BucketGrant) for b in [g.bucket]}
    for identity in WORKLOAD_GRANTS:
        assert_no_wildcard_admin(workload_statements(
            identity, placeholders, "arn:aws:kms:region:111122223333:key/storage-key",
            "arn:aws:kafka:region:111122223333:cluster/msk/uuid-1", topics))


@dataclass(frozen=True, kw_only=True)
class WorkloadIdentitiesArgs:
    """Inputs of `WorkloadIdentities`: what the grants of `WORKLOAD_GRANTS` are scoped to."""

    ctx: StackContext
    oidc: OidcIssuer
    account_id: pulumi.Input[str]
    """Scope of the controller policies (resources of this account only)."""
    cluster_name: pulumi.Input[str]
    """Scope of the cluster-autoscaler policy (node groups tagged for this cluster)."""
    bucket_arns: dict[str, pulumi.Output[str]]
    """`BUCKETS` key -> bucket ARN."""
    storage_key_arn: pulumi.Input[str]
    """The storage KMS key the bucket grants may use."""
    kafka_cluster_arn: pulumi.Input[str]
    topics: list[str]
    """The MSK topics the topic grants cover."""


class WorkloadIdentities(pulumi.ComponentResource):
    """One IRSA role per workload identity; controller roles only when their add-on is enabled."""

    roles: dict[str, IrsaRole]
    role_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: WorkloadIdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:identity:WorkloadIdentities", name, None, opts)
        ctx, oidc, account_id, cluster_name = args.ctx, args.oidc, args.account_id, args.cluster_name
        bucket_arns, storage_key_arn = args.bucket_arns, args.storage_key_arn
        kafka_cluster_arn, topics = args.kafka_cluster_arn, args.topics
        child = pulumi.ResourceOptions(parent=self)
        self.roles = {}
        check_workload_grants(topics)
        arns = pulumi.Output.all(bucket_arns, storage_key_arn, kafka_cluster_arn)
        for identity in WORKLOAD_GRANTS:
            if not grants_exist(identity, bucket_arns):
                continue  # its bucket is not created (the workload is switched off: OPTIONAL_BUCKETS)
            if identity in OPTIONAL_IDENTITY_SWITCHES and not OPTIONAL_IDENTITY_SWITCHES[identity](ctx):
                continue  # its workload is switched off
            statements = arns.apply(lambda a, ident=identity: workload_statements(ident, a[0], a[1], a[2], topics))
            self._role(ctx, oidc, identity, statements, child)

        addons = ctx.cfg.workloads.addons
        region = ctx.cfg.region
        scope = pulumi.Output.all(account_id, cluster_name)
        if addons.cluster_autoscaler:
            self._role(ctx, oidc, "cluster-autoscaler",
                       scope.apply(lambda a: cluster_autoscaler_statements(region, a[0], a[1])), child)
        if addons.aws_load_balancer_controller:
            self._role(ctx, oidc, "aws-load-balancer-controller",
                       scope.apply(lambda a: load_balancer_controller_statements(region, a[0])), child)
        self.role_arns = {k: r.role_arn for k, r in self.roles.items()}
        self.register_outputs({"roleArns": self.role_arns})

    def _role(self, ctx: StackContext, oidc: OidcIssuer, identity: str, statements: pulumi.Input[list[dict]],
              opts: pulumi.ResourceOptions) -> None:
        who = WORKLOAD_IDENTITIES[identity]
        self.roles[identity] = IrsaRole(identity, IrsaRoleArgs(
            ctx=ctx, oidc=oidc, namespace=who.namespace, service_account=who.service_account,
            statements=statements), opts=opts)
