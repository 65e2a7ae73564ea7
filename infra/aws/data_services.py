"""The AWS data layer in one component: KMS keys, S3, Redis, MSK, RDS and the workload IRSA roles.

Its `services` attribute is the `DataServices` contract the workload layer consumes; the composition
root builds it with one line after the cluster add-ons.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.cluster import Cluster
from infra.aws.database import Database, DatabaseArgs
from infra.aws.identities import WorkloadIdentities, WorkloadIdentitiesArgs
from infra.aws.interfaces import DatabaseEndpoint, DataServices, KafkaEndpoint, RedisEndpoint
from infra.aws.kafka import Kafka, KafkaArgs
from infra.aws.kms import DataKeys, DataKeysArgs
from infra.aws.network import Network
from infra.aws.redis import Redis, RedisArgs
from infra.aws.storage import Storage, StorageArgs
from stacks.context import StackContext


@dataclass(frozen=True, kw_only=True)
class DataLayerArgs:
    """Inputs of `DataLayer`."""

    ctx: StackContext
    network: Network
    """The VPC: data services go into its isolated subnets."""
    cluster: Cluster
    """The cluster: its node security group is the only client of the data services, its OIDC issuer
    the trust of the workload roles."""


class DataLayer(pulumi.ComponentResource):
    keys: DataKeys
    storage: Storage
    redis: Redis
    kafka: Kafka
    database: Database
    identities: WorkloadIdentities
    services: DataServices

    def __init__(self, name: str, args: DataLayerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:DataLayer", name, None, opts)
        ctx, network, cluster = args.ctx, args.network, args.cluster
        self._ctx = ctx
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        node_sg = cluster.node_security_group_id
        isolated = network.isolated_subnet_ids

        self.keys = DataKeys(f"{name}-keys", DataKeysArgs(ctx=ctx, account_id=account_id), child)
        keys = self.keys.arns
        self.storage = Storage(f"{name}-storage", StorageArgs(ctx=ctx, account_id=account_id,
                                                              key_arn=keys["storage"]), child)
        self.redis = Redis(f"{name}-redis", RedisArgs(
            ctx=ctx, vpc_id=network.vpc_id, subnet_ids=isolated, zones=network.availability_zones,
            node_sg_id=node_sg, kms_key_arn=keys["cache"], secrets_key_arn=keys["secrets"]), child)
        self.kafka = Kafka(f"{name}-kafka", KafkaArgs(
            ctx=ctx, vpc_id=network.vpc_id, subnet_ids=isolated, node_sg_id=node_sg,
            kms_key_arn=keys["streaming"]), child)
        self.database = Database(f"{name}-postgres", DatabaseArgs(
            ctx=ctx, vpc_id=network.vpc_id, subnet_ids=isolated, node_sg_id=node_sg,
            kms_key_arn=keys["database"], secrets_key_arn=keys["secrets"]), child)
        self.identities = WorkloadIdentities(f"{name}-identities", WorkloadIdentitiesArgs(
            ctx=ctx, oidc=cluster.oidc, account_id=account_id, cluster_name=cluster.name,
            bucket_arns=self.storage.bucket_arns, storage_key_arn=keys["storage"],
            kafka_cluster_arn=self.kafka.cluster_arn, topics=self.kafka.topics), child)
        self.services = DataServices(
            redis=RedisEndpoint(host=self.redis.host, port=self.redis.port, auth_token=self.redis.auth_token),
            kafka=KafkaEndpoint(bootstrap_brokers_iam=self.kafka.bootstrap_brokers_iam,
                                cluster_arn=self.kafka.cluster_arn,
                                bootstrap_brokers_scram=self.kafka.bootstrap_brokers_scram,
                                scram_username=self.kafka.scram_username,
                                scram_password=self.kafka.scram_password, topics=list(self.kafka.topics)),
            database=DatabaseEndpoint(host=self.database.host, port=self.database.port,
                                      database=self.database.database, username=self.database.username,
                                      password=self.database.password),
            buckets=dict(self.storage.buckets),
            role_arns=dict(self.identities.role_arns),
        )
        self.register_outputs({
            "buckets": self.storage.buckets, "redisHost": self.redis.host,
            "kafkaBootstrapBrokersIam": self.kafka.bootstrap_brokers_iam, "databaseHost": self.database.host,
            "roleArns": self.identities.role_arns,
        })

    def exports(self) -> dict[str, object]:
        """Stack outputs users need (no secret values: those stay in Secrets Manager)."""
        return {
            "buckets": self.storage.buckets,
            "accessLogBucket": self.storage.log_bucket,
            "redisEndpoint": self.redis.host,
            "redisPort": self.redis.port,
            "redisSecretArn": self.redis.secret_arn,
            "redisReplicationGroupId": self.redis.replication_group_id,
            "redisSecretName": self._ctx.redis_secret_name,
            "kafkaBootstrapBrokersIam": self.kafka.bootstrap_brokers_iam,
            "kafkaBootstrapBrokersScram": self.kafka.bootstrap_brokers_scram,
            "kafkaScramSecretArn": self.kafka.scram_secret_arn,
            "kafkaClusterArn": self.kafka.cluster_arn,
            "databaseEndpoint": self.database.host,
            "databasePort": self.database.port,
            "databaseSecretArn": self.database.secret_arn,
            "databaseIdentifier": self.database.identifier,
            "workloadRoleArns": self.identities.role_arns,
            "dataKeyArns": self.keys.arns,
        }
