"""ElastiCache Redis (OSS) replication group: the Feast online store.

Cluster mode disabled (one shard: Feast's `redis` online store type, simplest client setup) with
`replicasPerShard` read replicas placed round-robin over the zones. Encryption at rest with the
cache KMS key and in transit with TLS required; clients authenticate with a generated AUTH token
(also in Secrets Manager for the rotation runbook; updates use the ROTATE strategy so both tokens
work until clients have moved). Slow-log entries go to CloudWatch Logs as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.data_common import StoredSecret, generated_password, node_only_security_group, stateful_options
from stacks.context import StackContext

REDIS_PORT = 6379
# Evict only keys with a TTL (Feast sets them from the feature view TTL) and fail writes otherwise:
# silently evicting live features would serve wrong predictions.
PARAMETERS = {
    "maxmemory-policy": "volatile-lru",
    "slowlog-log-slower-than": "10000",  # microseconds: Feast reads should take ~1 ms
    "slowlog-max-len": "256",
}


def cache_cluster_zones(zones: list[str], members: int) -> list[str]:
    """Primary and replicas round-robin over the zones, so no two of the first len(zones) share one."""
    return [zones[i % len(zones)] for i in range(members)]


@dataclass(frozen=True, kw_only=True)
class RedisArgs:
    """Inputs of `Redis`."""

    ctx: StackContext
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    """Isolated subnets, one per zone (the subnet group)."""
    zones: list[str]
    """The zones of `subnet_ids`, in order: primary and replicas are placed round-robin over them."""
    node_sg_id: pulumi.Input[str]
    """Security group of the EKS nodes: the only source admitted on the Redis port."""
    kms_key_arn: pulumi.Input[str]
    """The cache KMS key (encryption at rest)."""
    secrets_key_arn: pulumi.Input[str]
    """The secrets KMS key of the Secrets Manager copy of the AUTH token."""


class Redis(pulumi.ComponentResource):
    host: pulumi.Output[str]
    reader_host: pulumi.Output[str]
    port: int
    auth_token: pulumi.Output[str]  # secret
    secret_arn: pulumi.Output[str]
    replication_group_id: str

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:Redis", name, None, opts)
        ctx, vpc_id, subnet_ids, zones = args.ctx, args.vpc_id, args.subnet_ids, args.zones
        node_sg_id, kms_key_arn, secrets_key_arn = args.node_sg_id, args.kms_key_arn, args.secrets_key_arn
        rc = ctx.cfg.redis
        child = pulumi.ResourceOptions(parent=self)
        group_id = ctx.redis_group_id
        self.replication_group_id = group_id
        self.port = REDIS_PORT

        sg = node_only_security_group(f"{name}-sg", ctx, vpc_id, node_sg_id,
                                      [(REDIS_PORT, REDIS_PORT, "Redis TLS from EKS nodes")], "redis", self)
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets", name=ctx.name("redis"), description="Isolated subnets for Redis",
            subnet_ids=subnet_ids, tags=ctx.tags(ctx.name("redis")), opts=child,
        )
        params = aws.elasticache.ParameterGroup(
            f"{name}-params", name=ctx.name("redis"), family=ctx.bom.engines["redisParameterFamily"],
            description="Feast online store settings",
            parameters=[aws.elasticache.ParameterGroupParameterArgs(name=k, value=v) for k, v in PARAMETERS.items()],
            tags=ctx.tags(ctx.name("redis")), opts=child,
        )
        slow_log = aws.cloudwatch.LogGroup(
            f"{name}-slow-log", name=f"/aws/elasticache/{group_id}/slow-log",
            retention_in_days=rc.log_retention_days, tags=ctx.tags(ctx.name("redis-slow-log")), opts=child,
        )
        token = generated_password(f"{name}-auth-token", 64, self)

        members = 1 + rc.replicas_per_shard
        group = aws.elasticache.ReplicationGroup(
            f"{name}-group",
            replication_group_id=group_id,
            description=f"Feast online store ({ctx.env})",
            engine="redis",
            engine_version=ctx.bom.engines["redis"],
            node_type=rc.node_type,
            port=REDIS_PORT,
            num_cache_clusters=members,
            preferred_cache_cluster_azs=cache_cluster_zones(zones, members),
            automatic_failover_enabled=rc.multi_az,
            multi_az_enabled=rc.multi_az,
            parameter_group_name=params.name,
            subnet_group_name=subnets.name,
            security_group_ids=[sg.id],
            at_rest_encryption_enabled=True,
            kms_key_id=kms_key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=token.result,
            auth_token_update_strategy="ROTATE",
            snapshot_retention_limit=rc.snapshot_retention_days,
            snapshot_window=rc.snapshot_window,
            maintenance_window=rc.maintenance_window,
            # Without a final snapshot (redis.finalSnapshot: false) nothing is left behind on destroy.
            final_snapshot_identifier=f"{group_id}-final" if rc.final_snapshot else None,
            auto_minor_version_upgrade=True,
            apply_immediately=rc.apply_immediately,
            log_delivery_configurations=[aws.elasticache.ReplicationGroupLogDeliveryConfigurationArgs(
                destination=slow_log.name, destination_type="cloudwatch-logs", log_format="json",
                log_type="slow-log",
            )],
            tags=ctx.tags(group_id),
            # The AUTH token is rotated in place by runbooks/redis-auth-rotation.md; `pulumi up` keeps it.
            opts=stateful_options(ctx, self, ignore_changes=["authToken", "authTokenUpdateStrategy"]),
        )

        self.host = group.primary_endpoint_address
        self.reader_host = group.reader_endpoint_address
        # Explicitly secret: it must stay masked wherever the contract carries it.
        self.auth_token = pulumi.Output.secret(token.result)
        self.secret_arn = StoredSecret(
            f"{name}-auth-secret", ctx, ctx.redis_secret_name, "Feast online store connection (AUTH token)",
            secrets_key_arn,
            {"host": self.host, "readerHost": self.reader_host, "port": REDIS_PORT, "tls": True,
             "authToken": token.result},
            self,
        ).arn
        self.register_outputs({"host": self.host, "port": REDIS_PORT, "secretArn": self.secret_arn})
