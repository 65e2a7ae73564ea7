"""Data-service runbooks: RDS point-in-time restore, Redis failover test and snapshot restore,
MSK storage expansion, broker replacement and consumer-lag investigation.

Restores never overwrite the damaged resource: they create a new one beside it and cut the
clients over, so the original stays available for forensics and as the way back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.cluster import MLFLOW_SERVER
from runbooks.aws_calls import aws_call, aws_read, expect
from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed

MLFLOW_DEPLOYMENT = MLFLOW_SERVER


# --- RDS (MLflow backend store) ---------------------------------------------------------------------

def _db(ctx: RunContext) -> str:
    return ctx.output("databaseIdentifier", ctx.stack.database_identifier)


def _restored_db(ctx: RunContext) -> str:
    return ctx.param("target", f"{_db(ctx)}-pitr")


def _restore_time(ctx: RunContext) -> datetime:
    raw = ctx.param("restore_time")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise StepFailed(f"--param restore_time={raw!r} is not an ISO-8601 time (e.g. 2026-11-22T03:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _db_window(ctx: RunContext) -> dict[str, Any]:
    instance = ctx.aws("rds").describe_db_instances(DBInstanceIdentifier=_db(ctx))["DBInstances"][0]
    latest = instance.get("LatestRestorableTime")
    when = _restore_time(ctx)
    expect(instance.get("BackupRetentionPeriod", 0) > 0, f"{_db(ctx)} has no automated backups")
    if latest is not None:
        expect(when <= latest, f"restore_time {when.isoformat()} is after the latest restorable time {latest}")
    ctx.state["db_subnet_group"] = instance["DBSubnetGroup"]["DBSubnetGroupName"]
    ctx.state["db_security_groups"] = [g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups", [])]
    return {"source": _db(ctx), "restore_time": when.isoformat(), "latest_restorable": str(latest),
            "retention_days": instance.get("BackupRetentionPeriod")}


def _restore_params(ctx: RunContext) -> dict[str, Any]:
    return {"SourceDBInstanceIdentifier": _db(ctx), "TargetDBInstanceIdentifier": _restored_db(ctx),
            "RestoreTime": _restore_time(ctx), "DBSubnetGroupName": ctx.state.get("db_subnet_group", "<source's>"),
            "VpcSecurityGroupIds": ctx.state.get("db_security_groups", []), "MultiAZ": ctx.stack.cfg.database.multi_az,
            "PubliclyAccessible": False, "CopyTagsToSnapshot": True,
            "DeletionProtection": ctx.stack.cfg.database.deletion_protection}


def _db_status(ctx: RunContext, identifier: str) -> str | None:
    rds = ctx.aws("rds")
    try:
        return rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["DBInstanceStatus"]
    except rds.exceptions.DBInstanceNotFoundFault:
        return None


def _wait_db(ctx: RunContext, identifier: str) -> None:
    ctx.wait_for(f"{identifier} to become available", lambda: _db_status(ctx, identifier) == "available",
             timeout_s=7200, poll_s=30)


def _verify_restored(ctx: RunContext, result: dict[str, Any]) -> None:
    _wait_db(ctx, _restored_db(ctx))
    restored = ctx.aws("rds").describe_db_instances(DBInstanceIdentifier=_restored_db(ctx))["DBInstances"][0]
    expect(restored.get("StorageEncrypted", False), "the restored instance is not encrypted")
    expect(not restored.get("PubliclyAccessible", False), "the restored instance is publicly accessible")


def _retired_db(ctx: RunContext) -> str:
    return f"{_db(ctx)}-before-restore"


def _rename(source: Any, target: Any) -> Any:
    def params(ctx: RunContext) -> dict[str, Any]:
        return {"DBInstanceIdentifier": source(ctx), "NewDBInstanceIdentifier": target(ctx), "ApplyImmediately": True}

    return params


def _verify_renamed(target: Any) -> Any:
    def verify(ctx: RunContext, result: dict[str, Any]) -> None:
        _wait_db(ctx, target(ctx))

    return verify


def _restart_mlflow(ctx: RunContext) -> dict[str, Any]:
    if ctx.kube is None:
        raise StepFailed("no Kubernetes access (--kube cluster): restart MLflow by hand "
                         "(kubectl -n mlflow rollout restart deployment mlflow)")
    ctx.kube.restart(*MLFLOW_DEPLOYMENT)
    return {"restarted": "/".join(MLFLOW_DEPLOYMENT[1:])}


def _verify_mlflow(ctx: RunContext, result: dict[str, Any]) -> None:
    assert ctx.kube is not None
    ctx.wait_for("MLflow rollout", lambda: ctx.kube.ready(*MLFLOW_DEPLOYMENT), timeout_s=600, poll_s=5)


RDS_PITR = Runbook(
    name="rds-point-in-time-restore",
    title="Restore the MLflow database to a point in time and cut over",
    envs=("dev", "staging", "prod"),
    steps=[
        aws_read("check the restore window", _db, _db_window),
        aws_call("restore into a new instance beside the original", "rds", "RestoreDBInstanceToPointInTime",
                 _restore_params, verify=_verify_restored, target=_restored_db,
                 rollback="delete the restored instance; the original is untouched"),
        # Cut-over by identifier swap: the endpoint DNS name follows the identifier, so MLflow's configured host
        # and the Pulumi state (keyed by identifier) both point at the restored instance afterwards.
        aws_call("retire the original under a new identifier", "rds", "ModifyDBInstance",
                 _rename(_db, _retired_db), verify=_verify_renamed(_retired_db), target=_db,
                 rollback="rename it back: ModifyDBInstance NewDBInstanceIdentifier=<original>"),
        aws_call("give the restored instance the original identifier", "rds", "ModifyDBInstance",
                 _rename(_restored_db, _db), verify=_verify_renamed(_db), target=_restored_db,
                 rollback="swap the identifiers back (restored -> -pitr, retired -> original)"),
        Step("restart MLflow so it reconnects", lambda ctx: "/".join(MLFLOW_DEPLOYMENT[1:]),
             precondition=lambda ctx: None,
             plan=lambda ctx: [f"kubernetes: rollout restart deployment {'/'.join(MLFLOW_DEPLOYMENT[1:])}"],
             action=_restart_mlflow, verify=_verify_mlflow,
             rollback="none needed; MLflow reconnects to whichever instance holds the identifier"),
    ],
)


# --- Redis -----------------------------------------------------------------------------------------

def _redis(ctx: RunContext) -> str:
    return ctx.output("redisReplicationGroupId", ctx.stack.redis_group_id)


def _primary(ctx: RunContext) -> dict[str, Any]:
    group = ctx.aws("elasticache").describe_replication_groups(ReplicationGroupId=_redis(ctx))["ReplicationGroups"][0]
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    primary = next((m for m in members if m.get("CurrentRole") == "primary"), members[0])
    expect(group.get("AutomaticFailover") == "enabled", f"{_redis(ctx)} has no automatic failover (dev has none)")
    expect(len(members) > 1, f"{_redis(ctx)} has no replica to fail over to")
    ctx.state["primary"] = primary["CacheClusterId"]
    ctx.state["node_group"] = group["NodeGroups"][0]["NodeGroupId"]
    return {"primary": primary["CacheClusterId"], "members": [m["CacheClusterId"] for m in members]}


def _verify_failover(ctx: RunContext, result: dict[str, Any]) -> None:
    ec = ctx.aws("elasticache")

    def promoted() -> bool:
        group = ec.describe_replication_groups(ReplicationGroupId=_redis(ctx))["ReplicationGroups"][0]
        members = group["NodeGroups"][0]["NodeGroupMembers"]
        now = next((m["CacheClusterId"] for m in members if m.get("CurrentRole") == "primary"), None)
        return group["Status"] == "available" and now not in (None, ctx.state["primary"])

    ctx.wait_for("a replica to become primary", promoted, timeout_s=1200, poll_s=15)


REDIS_FAILOVER_TEST = Runbook(
    name="redis-failover-test",
    title="Test Redis Multi-AZ failover",
    envs=("staging", "prod"),
    steps=[
        aws_read("find the primary and its replicas", _redis, _primary),
        aws_call("fail the primary over", "elasticache", "TestFailover",
                 lambda ctx: {"ReplicationGroupId": _redis(ctx), "NodeGroupId": ctx.state.get("node_group", "0001")},
                 verify=_verify_failover, target=_redis,
                 rollback="none needed: the old primary rejoins as a replica; run again to move it back"),
    ],
)


def _snapshot(ctx: RunContext) -> dict[str, Any]:
    wanted = ctx.params.get("snapshot")
    snapshots = ctx.aws("elasticache").describe_snapshots(ReplicationGroupId=_redis(ctx))["Snapshots"]
    usable = [s for s in snapshots if s.get("SnapshotStatus") == "available" and (not wanted or
                                                                                   s["SnapshotName"] == wanted)]
    expect(bool(usable), f"no available snapshot {wanted or ''} of {_redis(ctx)}")
    chosen = max(usable, key=lambda s: s.get("NodeSnapshots", [{}])[0].get("SnapshotCreateTime", datetime.min))
    ctx.state["snapshot"] = chosen["SnapshotName"]
    return {"snapshot": chosen["SnapshotName"], "available": len(usable)}


def _restored_redis(ctx: RunContext) -> str:
    return ctx.param("target", f"{_redis(ctx)}-restore")[:40]


def _redis_restore_params(ctx: RunContext) -> dict[str, Any]:
    r = ctx.stack.cfg.redis
    return {"ReplicationGroupId": _restored_redis(ctx), "SnapshotName": ctx.state.get("snapshot", "<latest>"),
            "ReplicationGroupDescription": f"restore of {_redis(ctx)}", "CacheNodeType": r.node_type,
            "NumCacheClusters": 1 + r.replicas_per_shard, "AutomaticFailoverEnabled": r.multi_az,
            "MultiAZEnabled": r.multi_az, "TransitEncryptionEnabled": True, "AtRestEncryptionEnabled": True,
            "CacheSubnetGroupName": ctx.stack.name("redis")}


def _verify_redis_restore(ctx: RunContext, result: dict[str, Any]) -> None:
    ec = ctx.aws("elasticache")

    def available() -> bool:
        return ec.describe_replication_groups(ReplicationGroupId=_restored_redis(ctx))["ReplicationGroups"][0][
            "Status"] == "available"

    ctx.wait_for(f"{_restored_redis(ctx)} to become available", available, timeout_s=3600, poll_s=30)


REDIS_SNAPSHOT_RESTORE = Runbook(
    name="redis-snapshot-restore",
    title="Restore the Redis online store from a snapshot",
    envs=("dev", "staging", "prod"),
    steps=[
        aws_read("choose the snapshot", _redis, _snapshot),
        aws_call("create a replication group from it", "elasticache", "CreateReplicationGroup", _redis_restore_params,
                 verify=_verify_redis_restore, target=_restored_redis,
                 rollback="delete the restored group; the original is untouched"),
    ],
)


# --- MSK -------------------------------------------------------------------------------------------

def _kafka_arn(ctx: RunContext) -> str:
    if "kafkaClusterArn" in ctx.stack_outputs:
        return str(ctx.stack_outputs["kafkaClusterArn"])
    clusters = ctx.aws("kafka").list_clusters_v2(ClusterNameFilter=ctx.stack.kafka_cluster_name)["ClusterInfoList"]
    expect(bool(clusters), f"MSK cluster {ctx.stack.kafka_cluster_name} not found")
    return clusters[0]["ClusterArn"]


def _kafka_state(ctx: RunContext) -> dict[str, Any]:
    info = ctx.aws("kafka").describe_cluster_v2(ClusterArn=_kafka_arn(ctx))["ClusterInfo"]
    expect(info["State"] == "ACTIVE", f"cluster is {info['State']}; wait until ACTIVE")
    ctx.state["current_version"] = info["CurrentVersion"]
    broker = info["Provisioned"]["BrokerNodeGroupInfo"]["StorageInfo"]["EbsStorageInfo"]
    ctx.state["volume_gib"] = broker["VolumeSize"]
    return {"state": info["State"], "version": info["CurrentVersion"], "volume_gib": broker["VolumeSize"]}


def _storage_params(ctx: RunContext) -> dict[str, Any]:
    size = int(ctx.param("volume_gib"))
    ceiling = ctx.stack.cfg.kafka.max_ebs_volume_gib
    expect(size > ctx.state.get("volume_gib", 0), f"MSK storage only grows: {size} <= {ctx.state.get('volume_gib')}")
    expect(size <= ceiling, f"{size} GiB exceeds kafka.maxEbsVolumeGib={ceiling}; raise it in the stack first")
    return {"ClusterArn": _kafka_arn(ctx), "CurrentVersion": ctx.state.get("current_version", "<current>"),
            "TargetBrokerEBSVolumeInfo": [{"KafkaBrokerNodeId": "All", "VolumeSizeGB": size}]}


def _verify_kafka_active(ctx: RunContext, result: dict[str, Any]) -> None:
    kafka = ctx.aws("kafka")
    ctx.wait_for("the cluster to return to ACTIVE", lambda: kafka.describe_cluster_v2(
        ClusterArn=_kafka_arn(ctx))["ClusterInfo"]["State"] == "ACTIVE", timeout_s=7200, poll_s=60)


MSK_STORAGE_EXPANSION = Runbook(
    name="msk-storage-expansion",
    title="Expand MSK broker storage",
    envs=("dev", "staging", "prod"),
    steps=[
        aws_read("read the cluster state and volume size", _kafka_arn, _kafka_state),
        aws_call("grow every broker's volume", "kafka", "UpdateBrokerStorage", _storage_params,
                 verify=_verify_kafka_active, target=_kafka_arn,
                 rollback="EBS volumes cannot shrink; set kafka.ebsVolumeGib to the new size in the stack"),
    ],
)

MSK_BROKER_REPLACEMENT = Runbook(
    name="msk-broker-replacement",
    title="Replace (reboot) an unhealthy MSK broker",
    envs=("dev", "staging", "prod"),
    steps=[
        aws_read("read the cluster state", _kafka_arn, _kafka_state),
        aws_call("reboot the broker (MSK replaces failed hardware)", "kafka", "RebootBroker",
                 lambda ctx: {"ClusterArn": _kafka_arn(ctx), "BrokerIds": [ctx.param("broker_id")]},
                 verify=_verify_kafka_active, target=_kafka_arn,
                 rollback="none: partitions led by the broker move to replicas while it restarts"),
    ],
)


def _lag(ctx: RunContext) -> dict[str, Any]:
    group = ctx.param("consumer_group", "feast-stream-ingestor")
    topic = ctx.param("topic", ctx.stack.cfg.kafka.topics[0].name)
    end = datetime.now(UTC)
    stats = ctx.aws("cloudwatch").get_metric_statistics(
        Namespace="AWS/Kafka", MetricName="MaxOffsetLag", StartTime=end - timedelta(hours=1), EndTime=end,
        Period=300, Statistics=["Maximum"],
        Dimensions=[{"Name": "Cluster Name", "Value": ctx.stack.kafka_cluster_name},
                    {"Name": "Consumer Group", "Value": group}, {"Name": "Topic", "Value": topic}])
    points = sorted(stats["Datapoints"], key=lambda p: p["Timestamp"])
    series = [int(p["Maximum"]) for p in points]
    trend = "growing" if len(series) > 1 and series[-1] > series[0] else "stable or shrinking"
    return {"consumer_group": group, "topic": topic, "max_offset_lag": series[-1] if series else None,
            "trend": trend, "points": json.dumps(series)}


MSK_CONSUMER_LAG = Runbook(
    name="msk-consumer-lag",
    title="Investigate consumer lag on MSK",
    envs=("dev", "staging", "prod"),
    steps=[aws_read("read MaxOffsetLag for the consumer group (last hour)", _kafka_arn, _lag)],
)
