"""The AWS data layer in one component: KMS keys, S3, Redis, MSK, RDS and the workload IRSA roles.

Its `services` attribute is the `DataServices` contract the workload layer consumes; the composition
root builds it with one line after the cluster add-ons.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.aws.cluster import Cluster
from infra.aws.database import Database
from infra.aws.identities import WorkloadIdentities
from infra.aws.interfaces import DatabaseEndpoint, DataServices, KafkaEndpoint, RedisEndpoint
from infra.aws.kafka import Kafka
from infra.aws.kms import DataKeys
from infra.aws.network import Network
from infra.aws.redis import Redis
from infra.aws.storage import Storage
from stacks.context import StackContext


class DataLayer(pulumi.ComponentResource):
    keys: DataKeys
    storage: Storage
    redis: Redis
    kafka: Kafka
    database: Database
    identities: WorkloadIdentities
    services: DataServices

    def __init__(self, name: str, ctx: StackContext, network: Network, cluster: Cluster,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:DataLayer", name, None, opts)
        self._ctx = ctx
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        node_sg = cluster.node_security_group_id
        isolated = network.isolated_subnet_ids

        self.keys = DataKeys(f"{name}-keys", ctx, account_id, child)
        keys = self.keys.arns
        self.storage = Storage(f"{name}-storage", ctx, account_id, keys["storage"], child)
        self.redis = Redis(f"{name}-redis", ctx, network.vpc_id, isolated, network.availability_zones, node_sg,
                           keys["cache"], keys["secrets"], child)
        self.kafka = Kafka(f"{name}-kafka", ctx, network.vpc_id, isolated, node_sg, keys["streaming"], child)
        self.database = Database(f"{name}-postgres", ctx, network.vpc_id, isolated, node_sg, keys["database"],
                                 keys["secrets"], child)
        self.identities = WorkloadIdentities(
            f"{name}-identities", ctx, cluster.oidc, account_id, cluster.name, self.storage.bucket_arns,
            keys["storage"], self.kafka.cluster_arn, self.kafka.topics, child,
        )
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
