"""Amazon MSK (provisioned): streaming features and Seldon Core 2 dataflow.

Brokers spread evenly over the isolated subnets (one per zone; the config rules keep the broker
count a multiple of the zone count). Clients authenticate over TLS only, never unauthenticated:
SASL/IAM (port 9098) for our own clients, and SASL/SCRAM-SHA-512 (port 9096) for Seldon Core 2,
whose Kafka clients cannot sign MSK IAM requests. The SCRAM credential (user `seldon`, generated
password) lives in the Secrets Manager secret `AmazonMSK_<prefix>-seldon` (MSK requires that prefix
and a customer-managed key: the streaming key) and is associated with the cluster. Brokers
replicate over TLS, storage is encrypted with the streaming KMS key and grows by storage
auto-scaling up to `maxEbsVolumeGib`. The configured topics are created through MSK's topic API
(`aws.msk.Topic`) with their partitions and replication factor. Broker logs go to CloudWatch Logs;
JMX and node exporters are open to Prometheus (ports 11001/11002, from the nodes only). The cluster configuration stops
clients creating topics implicitly and makes writes durable (RF 3, min ISR 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.data_common import StoredSecret, generated_password, node_only_security_group, stateful_options
from stacks.context import StackContext

IAM_TLS_PORT = 9098
SCRAM_TLS_PORT = 9096
SCRAM_USERNAME = "seldon"
SCRAM_SECRET_PREFIX = "AmazonMSK_"  # MSK only associates secrets whose name starts with this
JMX_EXPORTER_PORT = 11001
NODE_EXPORTER_PORT = 11002
EBS_VOLUME_PATH = "brokerNodeGroupInfo.storageInfo.ebsStorageInfo.volumeSize"
STORAGE_TARGET_UTILIZATION = 60.0  # percent of broker volume before auto-scaling grows it


def server_properties(broker_count: int) -> dict[str, str]:
    """Broker settings; replication capped by the broker count so that small dev clusters still start."""
    replication = min(3, broker_count)
    return {
        "auto.create.topics.enable": "false",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(max(1, min(2, replication - 1))),
        "unclean.leader.election.enable": "false",
        "num.partitions": "6",
        "log.retention.hours": "168",
    }


def topic_arn(cluster_arn: str, topic: str) -> str:
    """MSK IAM resource of a topic: arn:...:topic/<cluster-name>/<cluster-uuid>/<topic>."""
    return cluster_arn.replace(":cluster/", ":topic/", 1) + f"/{topic}"


def group_arn(cluster_arn: str, group: str) -> str:
    return cluster_arn.replace(":cluster/", ":group/", 1) + f"/{group}"


def scram_secret_name(prefix: str, user: str = SCRAM_USERNAME) -> str:
    """Secrets Manager name of a SCRAM user's credential: `AmazonMSK_<prefix>-<user>`."""
    return f"{SCRAM_SECRET_PREFIX}{prefix}-{user}"


@dataclass(frozen=True, kw_only=True)
class KafkaArgs:
    """Inputs of `Kafka`."""

    ctx: StackContext
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    """Isolated subnets, one per zone: brokers spread evenly over them."""
    node_sg_id: pulumi.Input[str]
    """Security group of the EKS nodes: the only source admitted on the broker and exporter ports."""
    kms_key_arn: pulumi.Input[str]
    """The streaming KMS key: broker storage and the SCRAM secret (MSK refuses the AWS-managed key there)."""


class Kafka(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    bootstrap_brokers_iam: pulumi.Output[str]
    bootstrap_brokers_scram: pulumi.Output[str]
    scram_username: str
    scram_password: pulumi.Output[str]  # secret
    scram_secret_arn: pulumi.Output[str]
    cluster_name: str
    topics: list[str]
    port: int

    def __init__(self, name: str, args: KafkaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:Kafka", name, None, opts)
        ctx, vpc_id, subnet_ids = args.ctx, args.vpc_id, args.subnet_ids
        node_sg_id, kms_key_arn = args.node_sg_id, args.kms_key_arn
        kc = ctx.cfg.kafka
        child = pulumi.ResourceOptions(parent=self)
        self.cluster_name = ctx.kafka_cluster_name
        self.topics = [t.name for t in kc.topics]
        self.port = IAM_TLS_PORT

        sg = node_only_security_group(f"{name}-sg", ctx, vpc_id, node_sg_id, [
            (IAM_TLS_PORT, IAM_TLS_PORT, "Kafka SASL/IAM over TLS from EKS nodes"),
            (SCRAM_TLS_PORT, SCRAM_TLS_PORT, "Kafka SASL/SCRAM over TLS from EKS nodes (Seldon)"),
            (JMX_EXPORTER_PORT, NODE_EXPORTER_PORT, "Prometheus JMX and node exporters from EKS nodes"),
        ], "kafka", self)
        configuration = aws.msk.Configuration(
            f"{name}-config",
            name=self.cluster_name,
            kafka_versions=[ctx.bom.engines["kafka"]],
            description="mlplatform broker defaults: explicit topics, durable writes",
            server_properties="".join(f"{k}={v}\n" for k, v in server_properties(kc.broker_count).items()),
            opts=child,
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-broker-logs", name=f"/aws/msk/{self.cluster_name}/broker",
            retention_in_days=kc.log_retention_days, tags=ctx.tags(ctx.name("kafka-logs")), opts=child,
        )
        cluster = aws.msk.Cluster(
            f"{name}-cluster",
            cluster_name=self.cluster_name,
            kafka_version=ctx.bom.engines["kafka"],
            number_of_broker_nodes=kc.broker_count,
            broker_node_group_info=aws.msk.ClusterBrokerNodeGroupInfoArgs(
                instance_type=kc.instance_type,
                client_subnets=subnet_ids,
                security_groups=[sg.id],
                az_distribution="DEFAULT",
                storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoArgs(
                    ebs_storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoEbsStorageInfoArgs(
                        volume_size=kc.ebs_volume_gib)),
            ),
            client_authentication=aws.msk.ClusterClientAuthenticationArgs(
                sasl=aws.msk.ClusterClientAuthenticationSaslArgs(iam=True, scram=True),
                unauthenticated=False,
            ),
            encryption_info=aws.msk.ClusterEncryptionInfoArgs(
                encryption_at_rest_kms_key_arn=kms_key_arn,
                encryption_in_transit=aws.msk.ClusterEncryptionInfoEncryptionInTransitArgs(
                    client_broker="TLS", in_cluster=True),
            ),
            configuration_info=aws.msk.ClusterConfigurationInfoArgs(
                arn=configuration.arn, revision=configuration.latest_revision),
            open_monitoring=aws.msk.ClusterOpenMonitoringArgs(
                prometheus=aws.msk.ClusterOpenMonitoringPrometheusArgs(
                    jmx_exporter=aws.msk.ClusterOpenMonitoringPrometheusJmxExporterArgs(enabled_in_broker=True),
                    node_exporter=aws.msk.ClusterOpenMonitoringPrometheusNodeExporterArgs(enabled_in_broker=True),
                )),
            logging_info=aws.msk.ClusterLoggingInfoArgs(
                broker_logs=aws.msk.ClusterLoggingInfoBrokerLogsArgs(
                    cloudwatch_logs=aws.msk.ClusterLoggingInfoBrokerLogsCloudwatchLogsArgs(
                        enabled=True, log_group=logs.name))),
            enhanced_monitoring=kc.enhanced_monitoring,
            tags=ctx.tags(self.cluster_name),
            # Auto-scaling grows the volume outside Pulumi; do not shrink it back on the next update.
            opts=stateful_options(ctx, self, ignore_changes=[EBS_VOLUME_PATH]),
        )
        target = aws.appautoscaling.Target(
            f"{name}-storage-target",
            service_namespace="kafka",
            scalable_dimension="kafka:broker-storage:VolumeSize",
            resource_id=cluster.arn,
            min_capacity=1,
            max_capacity=kc.max_ebs_volume_gib,
            tags=ctx.tags(ctx.name("kafka-storage")),
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-storage-policy",
            name=ctx.name("kafka-storage"),
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                predefined_metric_specification=(
                    aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                        predefined_metric_type="KafkaBrokerStorageUtilization")),
                target_value=STORAGE_TARGET_UTILIZATION,
                # MSK volumes cannot shrink.
                disable_scale_in=True,
            ),
            opts=child,
        )
        # The brokers refuse implicit topic creation (auto.create.topics.enable=false), so every configured
        # topic is created here through MSK's topic API, with its partitions and replication factor;
        # otherwise producers and the stream ingestor fail at run time on a topic that does not exist.
        for topic in kc.topics:
            aws.msk.Topic(
                f"{name}-topic-{topic.name}", cluster_arn=cluster.arn, name=topic.name,
                partition_count=topic.partitions, replication_factor=topic.replication_factor,
                opts=stateful_options(ctx, self),
            )
        password = generated_password(f"{name}-scram-password", 32, self)
        self.scram_username = SCRAM_USERNAME
        # Explicitly secret: it must stay masked wherever the contract carries it.
        self.scram_password = pulumi.Output.secret(password.result)
        scram = StoredSecret(
            f"{name}-scram-secret", ctx, scram_secret_name(ctx.prefix),
            "MSK SASL/SCRAM credential of Seldon Core 2", kms_key_arn,
            {"username": SCRAM_USERNAME, "password": self.scram_password}, self,
        )
        # Single association: other secrets can be associated beside it without Pulumi removing them.
        aws.msk.SingleScramSecretAssociation(
            f"{name}-scram-association", cluster_arn=cluster.arn, secret_arn=scram.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scram.version]),
        )
        self.scram_secret_arn = scram.arn
        self.cluster_arn = cluster.arn
        self.bootstrap_brokers_iam = cluster.bootstrap_brokers_sasl_iam
        self.bootstrap_brokers_scram = cluster.bootstrap_brokers_sasl_scram
        self.register_outputs({"clusterArn": self.cluster_arn, "bootstrapBrokersIam": self.bootstrap_brokers_iam,
                               "bootstrapBrokersScram": self.bootstrap_brokers_scram,
                               "scramSecretArn": self.scram_secret_arn})
