"""Managed data services: ElastiCache Redis, MSK and RDS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contracts.guardrails import (
    DATABASE_MULTI_AZ_TIERS,
    MIN_BACKUP_RETENTION_DAYS,
    MIN_FAILOVER_REPLICAS,
    MSK_MIN_ZONES,
    PROTECTED_TIERS,
    REDIS_MULTI_AZ_TIERS,
    spreads_evenly,
)
from policies.rules.base import (
    StackInfo,
    UnknownAtPreview,
    applies,
    as_mapping,
    environments_config,
    get_path,
    is_set,
    is_unknown,
    peek,
    resource_rule,
    size,
    tier_minimum_of,
    tier_minimums_config,
    truthy,
)

REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
MSK = "aws:msk/cluster:Cluster"
RDS = ("aws:rds/instance:Instance",)


@resource_rule(
    "redis-encryption-at-rest", [REDIS], area="Redis", severity="high",
    description="The Redis replication group encrypts data at rest.",
    remediation="Set `atRestEncryptionEnabled: true` with the data KMS key.",
)
def redis_at_rest(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if not truthy(props.get("atRestEncryptionEnabled")):
        yield "atRestEncryptionEnabled is not true"


@resource_rule(
    "redis-encryption-in-transit", [REDIS], area="Redis", severity="critical",
    description="Redis only accepts TLS connections.",
    remediation="Set `transitEncryptionEnabled: true` and leave `transitEncryptionMode` at `required`.",
)
def redis_in_transit(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if not truthy(props.get("transitEncryptionEnabled")):
        yield "transitEncryptionEnabled is not true"
    elif props.get("transitEncryptionMode") == "preferred":
        yield "transitEncryptionMode is `preferred`, which still accepts plaintext"


@resource_rule(
    "redis-auth", [REDIS], area="Redis", severity="high",
    description="Redis requires authentication (AUTH token or RBAC user groups).",
    remediation="Pass a generated `authToken` (secret) or `userGroupIds`.",
)
def redis_auth(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    # A generated token is unknown (and secret) until it exists: being set is what counts.
    if not any(is_set(props, k) for k in ("authToken", "authTokenWo", "userGroupIds")):
        yield "no authToken and no userGroupIds"


@resource_rule(
    "redis-multi-az", [REDIS], area="Redis", severity="high",
    description="Redis in production tiers is Multi-AZ with automatic failover and at least one replica.",
    remediation=f"Set `mlplatform:redis.multiAz: true` and `replicasPerShard >= {MIN_FAILOVER_REPLICAS}`.",
    config={"environments": environments_config(REDIS_MULTI_AZ_TIERS)},
)
def redis_multi_az(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                   stack: StackInfo) -> Iterable[str]:
    if not applies(config, stack):
        return
    if not truthy(props.get("multiAzEnabled")):
        yield "multiAzEnabled is not true"
    if not truthy(props.get("automaticFailoverEnabled")):
        yield "automaticFailoverEnabled is not true"
    replicas = props.get("replicasPerNodeGroup")
    nodes = props.get("numCacheClusters")
    if ((replicas is not None and int(replicas) < MIN_FAILOVER_REPLICAS)
            or (nodes is not None and int(nodes) < 1 + MIN_FAILOVER_REPLICAS)):
        yield "no replica to fail over to"


@resource_rule(
    "msk-tls-only", [MSK], area="MSK", severity="critical",
    description="Kafka clients and brokers talk TLS only.",
    remediation="Set `encryptionInfo.encryptionInTransit: {clientBroker: TLS, inCluster: true}`.",
)
def msk_tls_only(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    transit = as_mapping(get_path(props, "encryptionInfo.encryptionInTransit"))
    if transit.get("clientBroker") != "TLS":
        yield f"encryptionInTransit.clientBroker is {transit.get('clientBroker')!r}, not 'TLS'"
    if transit.get("inCluster") is not None and not truthy(transit.get("inCluster")):
        yield "encryptionInTransit.inCluster is false"


@resource_rule(
    "msk-encryption-at-rest", [MSK], area="MSK", severity="high",
    description="Broker storage is encrypted with a customer-managed KMS key.",
    remediation="Set `encryptionInfo.encryptionAtRestKmsKeyArn` to the data KMS key.",
)
def msk_at_rest(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if not is_set(as_mapping(props.get("encryptionInfo")), "encryptionAtRestKmsKeyArn"):
        yield "no encryptionInfo.encryptionAtRestKmsKeyArn (AWS-owned key)"


@resource_rule(
    "msk-iam-auth", [MSK], area="MSK", severity="high",
    description="Kafka clients authenticate with IAM (SASL/IAM); unauthenticated access is off.",
    remediation="Set `clientAuthentication: {sasl: {iam: true}, unauthenticated: false}`.",
)
def msk_iam_auth(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    auth = as_mapping(props.get("clientAuthentication"))
    if not truthy(get_path(auth, "sasl.iam")):
        yield "clientAuthentication.sasl.iam is not true"
    if truthy(auth.get("unauthenticated")):
        yield "clientAuthentication.unauthenticated is true"


@resource_rule(
    "msk-multi-az", [MSK], area="MSK", severity="high",
    description="Brokers are spread over three availability zones.",
    remediation="Give `brokerNodeGroupInfo.clientSubnets` one private subnet in each of three zones and a "
                "broker count that is a multiple of three.",
    config={"minZones": {"type": "integer", "default": MSK_MIN_ZONES,
                         "description": "Minimum number of broker subnets/AZs."}},
)
def msk_multi_az(_t: str, props: Mapping[str, Any], config: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    subnets = peek(as_mapping(props.get("brokerNodeGroupInfo")), "clientSubnets")
    if is_unknown(subnets):
        raise UnknownAtPreview("brokerNodeGroupInfo.clientSubnets")
    zones = size(subnets)  # the subnet ids themselves may be unknown; their number is not
    brokers = props.get("numberOfBrokerNodes")
    if zones < int(config["minZones"]):
        yield f"brokers span {zones} subnet(s), fewer than {config['minZones']}"
    elif brokers is not None and not spreads_evenly(int(brokers), zones):
        yield f"{brokers} brokers cannot spread evenly over {zones} zones"


@resource_rule(
    "msk-logging", [MSK], area="MSK", severity="medium",
    description="Broker logs are delivered (CloudWatch Logs, S3 or Firehose).",
    remediation="Enable `loggingInfo.brokerLogs.cloudwatchLogs` with the broker log group.",
)
def msk_logging(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    logs = as_mapping(get_path(props, "loggingInfo.brokerLogs"))
    if not any(truthy(as_mapping(logs.get(k)).get("enabled")) for k in ("cloudwatchLogs", "s3", "firehose")):
        yield "no broker log delivery enabled"


@resource_rule(
    "rds-storage-encrypted", RDS, area="RDS", severity="high",
    description="Database storage (and so its snapshots) is encrypted with KMS.",
    remediation="Set `storageEncrypted: true` with the data KMS key.",
)
def rds_encrypted(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if not truthy(props.get("storageEncrypted")):
        yield "storageEncrypted is not true"


@resource_rule(
    "rds-not-public", RDS, area="RDS", severity="critical",
    description="The database is not publicly accessible.",
    remediation="Set `publiclyAccessible: false`; place it in the isolated subnets.",
)
def rds_not_public(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if truthy(props.get("publiclyAccessible")):
        yield "publiclyAccessible is true"


@resource_rule(
    "rds-backups", RDS, area="RDS", severity="high",
    description="Automated backups are kept for at least the environment's minimum number of days.",
    remediation="Raise `mlplatform:database.backupRetentionDays`.",
    config={"minimumRetentionDays": tier_minimums_config(MIN_BACKUP_RETENTION_DAYS,
                                                         "Smallest backupRetentionPeriod allowed")},
)
def rds_backups(_t: str, props: Mapping[str, Any], config: Mapping[str, Any], stack: StackInfo) -> Iterable[str]:
    days = props.get("backupRetentionPeriod")
    minimum = tier_minimum_of(config["minimumRetentionDays"], stack)
    if days is None or int(days) < minimum:
        yield f"backupRetentionPeriod is {days!r}, below {minimum}"


@resource_rule(
    "rds-deletion-protection", RDS, area="RDS", severity="high",
    description="Production databases have deletion protection and take a final snapshot.",
    remediation="Set `mlplatform:database.deletionProtection: true` and `finalSnapshot: true`.",
    config={"environments": environments_config(PROTECTED_TIERS)},
)
def rds_deletion_protection(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                            stack: StackInfo) -> Iterable[str]:
    if not applies(config, stack):
        return
    if not truthy(props.get("deletionProtection")):
        yield "deletionProtection is not true"
    if truthy(props.get("skipFinalSnapshot")):
        yield "skipFinalSnapshot is true"


@resource_rule(
    "rds-multi-az", RDS, area="RDS", severity="high",
    description="Production databases run Multi-AZ with a synchronous standby.",
    remediation="Set `mlplatform:database.multiAz: true`.",
    config={"environments": environments_config(DATABASE_MULTI_AZ_TIERS)},
)
def rds_multi_az(_t: str, props: Mapping[str, Any], config: Mapping[str, Any], stack: StackInfo) -> Iterable[str]:
    if applies(config, stack) and not truthy(props.get("multiAz")):
        yield "multiAz is not true"
