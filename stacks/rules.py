"""Cross-field rules of the stack config: combinations the schema's types cannot express.

Each rule returns `ConfigIssue`s whose `path` is the key as written in the stack file, so an
operator can find it. Rules run after the structural validation in `stacks/schema.py` and before
any resource is declared. `RULES` is listed in docs/CONFIG.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from itertools import combinations

from contracts import model_registry
from contracts.guardrails import (
    APPROVAL_TIERS,
    DATABASE_MULTI_AZ_TIERS,
    FLOW_LOG_TIERS,
    MIN_BACKUP_RETENTION_DAYS,
    MIN_FAILOVER_REPLICAS,
    MIN_KMS_DELETION_WINDOW_DAYS,
    MSK_MIN_ZONES,
    PIPELINES_MANAGED_DB_TIERS,
    PROTECTED_TIERS,
    REDIS_MULTI_AZ_TIERS,
    REQUIRED_CONTROL_PLANE_LOGS,
    RESTRICTED_ENDPOINT_TIERS,
    open_cidrs,
    spreads_evenly,
    tier_minimum,
)
from stacks.bom import load_bom
from stacks.schema import NAMESPACE, Environment, PlatformConfig

# EC2 families with NVIDIA GPUs usable by the EKS GPU AMIs.
GPU_FAMILIES = ("p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6", "g4dn", "g5", "g6", "g6e", "gr6")
REQUIRED_ROLES = ("system", "general", "inference")
# Secrets Manager: a deleted secret is recoverable for 7 to 30 days, or deleted at once (0).
SECRET_RECOVERY_WINDOW_RANGE = (7, 30)


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _key(*parts: object) -> str:
    return f"{NAMESPACE}:" + ".".join(str(p) for p in parts)


def _tiers(tiers: tuple[str, ...]) -> str:
    return "/".join(tiers)


def _per_tier(minimums: Mapping[str, int]) -> str:
    return ", ".join(f"{tier} {value}" for tier, value in minimums.items())


Rule = Callable[[PlatformConfig], Iterator[ConfigIssue]]
RULES: list[tuple[str, Rule]] = []


def rule(description: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES.append((description, fn))
        return fn

    return register


@rule(f"Availability zones are distinct, belong to `aws:region`; prod uses exactly 3, others 2 or 3; MSK needs "
      f"at least {MSK_MIN_ZONES} in every tier.")
def _zones(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    azs = cfg.network.availability_zones
    path = _key("network", "availabilityZones")
    if len(set(azs)) != len(azs):
        yield ConfigIssue(path, f"zones must be distinct, got {azs}")
    wrong = [az for az in azs if not re.fullmatch(re.escape(cfg.region) + r"[a-z]", az)]
    if wrong:
        yield ConfigIssue(path, f"{wrong} are not zones of region {cfg.region!r} (expected e.g. {cfg.region}a)")
    if cfg.environment == Environment.PROD and len(azs) != 3:
        yield ConfigIssue(path, f"prod needs exactly 3 availability zones, got {len(azs)}: {azs}")
    elif len(azs) not in (2, 3):
        yield ConfigIssue(path, f"use 2 or 3 availability zones, got {len(azs)}")
    elif len(azs) < MSK_MIN_ZONES:
        yield ConfigIssue(path, f"MSK brokers must span at least {MSK_MIN_ZONES} availability zones, got {len(azs)}")
    if cfg.environment in FLOW_LOG_TIERS and not cfg.network.flow_logs.enabled:
        yield ConfigIssue(_key("network", "flowLogs", "enabled"), f"{cfg.environment} needs VPC flow logs")


@rule("prod uses one NAT gateway per availability zone (`natGateways: perAz`).")
def _nat(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    if cfg.environment == Environment.PROD and cfg.network.nat_gateways != "perAz":
        yield ConfigIssue(
            _key("network", "natGateways"),
            f"prod needs one NAT gateway per AZ: got {cfg.network.nat_gateways!r}, allowed: 'perAz'",
        )


@rule("One subnet per zone in each tier, inside the VPC CIDR, no two subnets overlapping.")
def _subnets(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    net = cfg.network
    tiers: dict[str, list[IPv4Network]] = {
        "publicSubnetCidrs": net.public_subnet_cidrs,
        "privateSubnetCidrs": net.private_subnet_cidrs,
        "isolatedSubnetCidrs": net.isolated_subnet_cidrs,
    }
    every: list[tuple[str, IPv4Network]] = []
    for tier, cidrs in tiers.items():
        if len(cidrs) != len(net.availability_zones):
            yield ConfigIssue(
                _key("network", tier),
                f"needs one CIDR per availability zone ({len(net.availability_zones)}), got {len(cidrs)}",
            )
        for i, cidr in enumerate(cidrs):
            if not cidr.subnet_of(net.vpc_cidr):
                yield ConfigIssue(_key("network", tier, i), f"{cidr} is outside the VPC CIDR {net.vpc_cidr}")
            every.append((f"{tier}[{i}]", cidr))
    for (name_a, a), (name_b, b) in combinations(every, 2):
        if a.overlaps(b):
            yield ConfigIssue(_key("network", name_b), f"{b} overlaps {name_a} ({a})")


@rule("Kubernetes version is one the BOM supports; api, audit and authenticator logs are on.")
def _cluster(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    supported = load_bom().kubernetes.supported
    version = cfg.cluster.kubernetes_version
    if version is not None and version not in supported:
        yield ConfigIssue(
            _key("cluster", "kubernetesVersion"), f"{version!r} is not supported; allowed: {', '.join(supported)}"
        )
    missing = [t for t in REQUIRED_CONTROL_PLANE_LOGS if t not in cfg.cluster.log_types]
    if missing:
        yield ConfigIssue(_key("cluster", "logTypes"), f"must include {missing}")


RFC1918 = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))


@rule("A public API endpoint is restricted to public CIDRs; prod never allows 0.0.0.0/0.")
def _endpoint(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    c = cfg.cluster
    path = _key("cluster", "publicAccessCidrs")
    if c.public_access_cidrs and not c.endpoint_public_access:
        yield ConfigIssue(path, "set only when endpointPublicAccess is true")
    if not c.endpoint_public_access:
        return
    open_world = open_cidrs(c.public_access_cidrs)
    private = [str(n) for n in c.public_access_cidrs if any(n.subnet_of(r) for r in RFC1918)]
    if private:
        yield ConfigIssue(path, f"{private} are private ranges: the public endpoint only sees public source "
                          "addresses (reach it from the VPC through the private endpoint)")
    if cfg.environment in RESTRICTED_ENDPOINT_TIERS and (not c.public_access_cidrs or open_world):
        yield ConfigIssue(path, f"{cfg.environment} with a public endpoint needs restricted CIDRs "
                          "(not empty, no 0.0.0.0/0)")
    elif not c.public_access_cidrs:
        yield ConfigIssue(path, "a public endpoint needs at least one CIDR (use 0.0.0.0/0 explicitly if intended)")


@rule("Node groups: system, general and inference roles exist; min <= desired <= max; GPU groups use "
      "GPU instance types; system groups are on-demand; SPOT only in dev.")
def _node_groups(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    roles = {g.role for g in cfg.node_groups.values()}
    for role in REQUIRED_ROLES:
        if role not in roles:
            yield ConfigIssue(_key("nodeGroups"), f"needs a node group with role {role!r}")
    for name, g in cfg.node_groups.items():
        if not g.min_size <= g.desired_size <= g.max_size:
            yield ConfigIssue(
                _key("nodeGroups", name),
                f"needs minSize <= desiredSize <= maxSize, got {g.min_size} / {g.desired_size} / {g.max_size}",
            )
        if g.role == "gpu":
            bad = [t for t in g.instance_types if t.split(".")[0] not in GPU_FAMILIES]
            if bad:
                yield ConfigIssue(
                    _key("nodeGroups", name, "instanceTypes"),
                    f"GPU group has non-GPU instance types {bad}; allowed families: {', '.join(GPU_FAMILIES)}",
                )
        if g.capacity_type == "SPOT" and (g.role == "system" or cfg.environment != Environment.DEV):
            yield ConfigIssue(
                _key("nodeGroups", name, "capacityType"),
                "SPOT is allowed only in dev and never for the system group; allowed: 'ON_DEMAND'",
            )


@rule(f"Redis: {_tiers(REDIS_MULTI_AZ_TIERS)} have replicas and Multi-AZ failover; Multi-AZ needs a replica; "
      "prod keeps >= 7 days of snapshots.")
def _redis(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    r = cfg.redis
    if cfg.environment in REDIS_MULTI_AZ_TIERS:
        if r.replicas_per_shard < MIN_FAILOVER_REPLICAS:
            yield ConfigIssue(
                _key("redis", "replicasPerShard"),
                f"{cfg.environment} needs >= {MIN_FAILOVER_REPLICAS} replica, got {r.replicas_per_shard}",
            )
        if not r.multi_az:
            yield ConfigIssue(_key("redis", "multiAz"), f"{cfg.environment} needs Multi-AZ with automatic failover")
    if r.multi_az and r.replicas_per_shard < MIN_FAILOVER_REPLICAS:
        yield ConfigIssue(_key("redis", "multiAz"),
                          f"Multi-AZ failover needs replicasPerShard >= {MIN_FAILOVER_REPLICAS}")
    if cfg.environment == Environment.PROD and r.snapshot_retention_days < 7:
        yield ConfigIssue(
            _key("redis", "snapshotRetentionDays"), f"prod needs >= 7, got {r.snapshot_retention_days}"
        )


@rule("MSK: brokers are a multiple of the zone count (>= 3 outside dev); storage ceiling >= initial "
      "size; topic replication <= brokers.")
def _kafka(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    k = cfg.kafka
    zones = len(cfg.network.availability_zones)
    if not spreads_evenly(k.broker_count, zones):
        yield ConfigIssue(
            _key("kafka", "brokerCount"),
            f"{k.broker_count} is not a multiple of the {zones} availability zones",
        )
    if cfg.environment != Environment.DEV and k.broker_count < 3:
        yield ConfigIssue(_key("kafka", "brokerCount"), f"{cfg.environment} needs >= 3 brokers")
    if k.max_ebs_volume_gib < k.ebs_volume_gib:
        yield ConfigIssue(_key("kafka", "maxEbsVolumeGib"), "must be >= ebsVolumeGib")
    for i, t in enumerate(k.topics):
        if t.replication_factor > k.broker_count:
            yield ConfigIssue(
                _key("kafka", "topics", i, "replicationFactor"),
                f"{t.replication_factor} exceeds brokerCount {k.broker_count}",
            )


@rule("MSK topics outside dev keep 3 replicas (min.insync.replicas is 2, so one broker may fail).")
def _kafka_durability(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    if cfg.environment == Environment.DEV:
        return
    for i, t in enumerate(cfg.kafka.topics):
        if t.replication_factor < 3:
            yield ConfigIssue(
                _key("kafka", "topics", i, "replicationFactor"),
                f"{cfg.environment} needs >= 3 (min.insync.replicas=2), got {t.replication_factor}",
            )


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEK = 7 * 24 * 60


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _span(start: int, end: int, period: int) -> tuple[int, int]:
    """[start, end) in minutes; a window ending before it starts wraps past midnight (or Sunday)."""
    return start, end if end > start else end + period


def _daily_in_week(window: str) -> list[tuple[int, int]]:
    start, end = _span(*(_minutes(t) for t in window.split("-")), 24 * 60)
    return [(day * 24 * 60 + start, day * 24 * 60 + end) for day in range(7)]


def _weekly(window: str) -> tuple[int, int]:
    def at(part: str) -> int:
        day, hhmm = part.split(":", 1)
        return _DAYS.index(day) * 24 * 60 + _minutes(hhmm)

    return _span(*(at(p) for p in window.split("-")), _WEEK)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return any(a[0] < b[1] + shift and b[0] + shift < a[1] for shift in (-_WEEK, 0, _WEEK))


def _window_issues(path: str, window: str, span: tuple[int, int], shortest: int,
                   longest: int | None = None) -> Iterator[ConfigIssue]:
    start, end = window.split("-")
    if start == end:
        yield ConfigIssue(path, f"{window!r} starts when it ends; AWS needs a window of >= {shortest} minutes")
    elif span[1] - span[0] < shortest:
        yield ConfigIssue(path, f"must last >= {shortest} minutes (AWS), got {window!r}")
    elif longest is not None and span[1] - span[0] > longest:
        yield ConfigIssue(path, f"must last <= {longest // 60} hours (AWS), got {window!r}")


@rule("RDS: the daily backup window and the weekly maintenance window each last >= 30 minutes (AWS) and do not "
      "overlap.")
def _database_windows(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    d = cfg.database
    backup = _daily_in_week(d.backup_window)
    maintenance = _weekly(d.maintenance_window)
    yield from _window_issues(_key("database", "backupWindow"), d.backup_window, backup[0], 30)
    yield from _window_issues(_key("database", "maintenanceWindow"), d.maintenance_window, maintenance, 30)
    if any(_overlap(day, maintenance) for day in backup):
        yield ConfigIssue(
            _key("database", "backupWindow"),
            f"{d.backup_window!r} overlaps maintenanceWindow {d.maintenance_window!r}",
        )


@rule("Redis: the daily snapshot window lasts >= 60 minutes, the weekly maintenance window 60 minutes to 24 hours "
      "(AWS), and they do not overlap.")
def _redis_windows(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    r = cfg.redis
    snapshot = _daily_in_week(r.snapshot_window)
    maintenance = _weekly(r.maintenance_window)
    yield from _window_issues(_key("redis", "snapshotWindow"), r.snapshot_window, snapshot[0], 60)
    yield from _window_issues(_key("redis", "maintenanceWindow"), r.maintenance_window, maintenance, 60, 24 * 60)
    if any(_overlap(day, maintenance) for day in snapshot):
        yield ConfigIssue(
            _key("redis", "snapshotWindow"),
            f"{r.snapshot_window!r} overlaps maintenanceWindow {r.maintenance_window!r}",
        )


_QUANTITY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(?:[eE](\d+)|(m|k|Ki|[MGTPE]i?))?$")
_SUFFIXES = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
             "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}


def quantity(text: str) -> float:
    """The value of a Kubernetes quantity (the schema has checked its syntax)."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, exponent, suffix = match.groups()
    return float(number) * (10.0 ** int(exponent) if exponent else _SUFFIXES[suffix])


@rule("Workload containers request no more CPU or memory than their limit (the Kubernetes API rejects it).")
def _workload_resources(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    for name in ("mlflow", "feast", "seldon", "feedback"):
        res = getattr(cfg.workloads, name).resources
        for kind in ("cpu", "memory"):
            request, limit = getattr(res, f"{kind}_request"), getattr(res, f"{kind}_limit")
            if quantity(request) > quantity(limit):
                yield ConfigIssue(_key("workloads", name, "resources", f"{kind}Request"),
                                  f"{request} is above the {kind} limit {limit}")


@rule("S3: prod has access logging; forceDestroy only in dev.")
def _storage(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    if cfg.environment == Environment.PROD and not cfg.storage.access_logging:
        yield ConfigIssue(_key("storage", "accessLogging"), "prod needs bucket access logging")
    if cfg.storage.force_destroy and cfg.environment != Environment.DEV:
        yield ConfigIssue(_key("storage", "forceDestroy"), f"allowed only in dev, not {cfg.environment}")


@rule(f"RDS: storage ceiling >= initial size; backups kept at least the tier minimum "
      f"({_per_tier(MIN_BACKUP_RETENTION_DAYS)} days); Multi-AZ in {_tiers(DATABASE_MULTI_AZ_TIERS)}; deletion "
      f"protection and a final snapshot in {_tiers(PROTECTED_TIERS)}.")
def _database(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    d = cfg.database
    env = cfg.environment
    if d.max_allocated_storage_gib < d.allocated_storage_gib:
        yield ConfigIssue(_key("database", "maxAllocatedStorageGib"), "must be >= allocatedStorageGib")
    minimum = tier_minimum(MIN_BACKUP_RETENTION_DAYS, env)
    if d.backup_retention_days < minimum:
        yield ConfigIssue(
            _key("database", "backupRetentionDays"),
            f"{env} needs >= {minimum} day{'s' * (minimum != 1)}, got {d.backup_retention_days}",
        )
    if env in DATABASE_MULTI_AZ_TIERS and not d.multi_az:
        yield ConfigIssue(_key("database", "multiAz"), f"{env} needs Multi-AZ")
    if env in PROTECTED_TIERS:
        if not d.deletion_protection:
            yield ConfigIssue(_key("database", "deletionProtection"), f"{env} needs deletion protection")
        if not d.final_snapshot:
            yield ConfigIssue(_key("database", "finalSnapshot"), f"{env} needs a final snapshot (true)")


@rule(f"Promotion to champion needs a recorded approval in {_tiers(APPROVAL_TIERS)} (`gatesAndApproval`).")
def _approval(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    if cfg.environment in APPROVAL_TIERS and cfg.governance.promotion != "gatesAndApproval":
        yield ConfigIssue(_key("governance", "promotion"),
                          f"{cfg.environment} needs 'gatesAndApproval', got {cfg.governance.promotion!r}")


@rule("prod's model deployments change through reviewed pull requests (`workloads.gitops.promotion: pullRequest`).")
def _gitops_review(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    g = cfg.workloads.gitops
    if cfg.environment == "prod" and g.enabled and g.promotion != "pullRequest":
        yield ConfigIssue(_key("workloads", "gitops", "promotion"),
                          f"prod needs 'pullRequest' (a reviewed change is the manual approval), got {g.promotion!r}")


@rule(f"Stateful resources are protected in {_tiers(PROTECTED_TIERS)}; prod runs MLflow, Feast, the feedback "
      "endpoint and Alertmanager "
      "with >= 2 replicas; OpenSearch trace storage needs an URL.")
def _prod_resilience(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    w = cfg.workloads
    if w.tracing.storage == "opensearch" and not w.tracing.opensearch_url:
        yield ConfigIssue(_key("workloads", "tracing", "opensearchUrl"), "required when storage is 'opensearch'")
    if cfg.environment in PROTECTED_TIERS and not cfg.protect_stateful_resources:
        yield ConfigIssue(_key("protectStatefulResources"), f"{cfg.environment} needs true")
    if cfg.environment != Environment.PROD:
        return
    for name in ("mlflow", "feast", "feedback"):
        service = getattr(w, name)
        if service.enabled and service.replicas < 2:
            yield ConfigIssue(_key("workloads", name, "replicas"), f"prod needs >= 2, got {service.replicas}")
    alertmanager = w.observability.alertmanager_replicas
    if w.observability.enabled and alertmanager < 2:
        yield ConfigIssue(_key("workloads", "observability", "alertmanagerReplicas"),
                          f"prod needs >= 2, got {alertmanager}")


@rule(f"Deleting a resource keeps its data in {_tiers(PROTECTED_TIERS)}: a final Redis snapshot, the RDS "
      "automated backups, secrets recoverable for >= 7 days, volumes retained (`Retain`), model-server images "
      "kept; a secret's recovery window is 0 (delete at once) or 7 to 30 days.")
def _deletion_keeps_data(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    env, window = cfg.environment, cfg.secrets.recovery_window_days
    lowest, highest = SECRET_RECOVERY_WINDOW_RANGE
    if window and not lowest <= window <= highest:
        yield ConfigIssue(_key("secrets", "recoveryWindowDays"), f"must be 0 or {lowest} to {highest}, got {window}")
    if env not in PROTECTED_TIERS:
        return
    if window < lowest:
        yield ConfigIssue(_key("secrets", "recoveryWindowDays"), f"{env} needs >= {lowest}, got {window}")
    if not cfg.redis.final_snapshot:
        yield ConfigIssue(_key("redis", "finalSnapshot"), f"{env} needs a final snapshot (true)")
    if cfg.database.delete_automated_backups:
        yield ConfigIssue(_key("database", "deleteAutomatedBackups"), f"{env} keeps automated backups (false)")
    if cfg.cluster.volume_reclaim_policy != "Retain":
        yield ConfigIssue(_key("cluster", "volumeReclaimPolicy"),
                          f"{env} needs 'Retain', got {cfg.cluster.volume_reclaim_policy!r}")
    if cfg.workloads.model_server_repository.force_delete:
        yield ConfigIssue(_key("workloads", "modelServerRepository", "forceDelete"), f"{env} needs false")


@rule(f"Redis and RDS changes wait for their maintenance windows in {_tiers(PROTECTED_TIERS)} "
      "(`applyImmediately: false`).")
def _maintenance_windows(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    if cfg.environment not in PROTECTED_TIERS:
        return
    for section in ("redis", "database"):
        if getattr(cfg, section).apply_immediately:
            yield ConfigIssue(_key(section, "applyImmediately"), f"{cfg.environment} needs false")


@rule(f"KMS deletion windows (data keys, EKS secrets key) are at least the tier minimum "
      f"({_per_tier(MIN_KMS_DELETION_WINDOW_DAYS)} days).")
def _kms_deletion_windows(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    minimum = tier_minimum(MIN_KMS_DELETION_WINDOW_DAYS, cfg.environment)
    windows = {("dataKeys", "deletionWindowDays"): cfg.data_keys.deletion_window_days,
               ("cluster", "secretsKeyDeletionWindowDays"): cfg.cluster.secrets_key_deletion_window_days}
    for path, days in windows.items():
        if days < minimum:
            yield ConfigIssue(_key(*path), f"{cfg.environment} needs >= {minimum} days, got {days}")


@rule("Models: replica bounds ordered; experiment weights add up to 100; every quality gate names a metric the "
      "model's evaluation produces (its spec's `metrics`).")
def _models(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    for name in type(cfg.models).model_fields:
        m = getattr(cfg.models, name)
        spec = model_registry.get(name)
        for metric in spec.unknown_metrics(m.quality_gates):
            yield ConfigIssue(_key("models", name, "qualityGates", metric),
                              f"{name}'s evaluation produces no metric {metric!r}; allowed: "
                              f"{', '.join(spec.metrics)}")
        if m.min_replicas > m.max_replicas:
            yield ConfigIssue(_key("models", name), "needs minReplicas <= maxReplicas")
        total = m.experiment.champion_weight + m.experiment.challenger_weight
        if total != 100:
            yield ConfigIssue(_key("models", name, "experiment"), f"weights must add up to 100, got {total}")


@rule(f"Kubeflow Pipelines keeps its databases on the managed RDS instance in {_tiers(PIPELINES_MANAGED_DB_TIERS)}.")
def _pipelines(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    p = cfg.workloads.pipelines
    if p.enabled and cfg.environment in PIPELINES_MANAGED_DB_TIERS and p.database != "managed":
        yield ConfigIssue(_key("workloads", "pipelines", "database"),
                          f"{cfg.environment} needs `managed` (runs and metadata on the Multi-AZ database), got "
                          f"{p.database}")


@rule("A bandit reads its rewards from a feedback endpoint: the platform's own (`workloads.feedback.enabled`) "
      "unless it names another (`bandit.feedbackUrl`).")
def _bandit_feedback(cfg: PlatformConfig) -> Iterator[ConfigIssue]:
    if cfg.workloads.feedback.enabled:
        return
    for name in cfg.models.names():
        bandit = getattr(cfg.models, name).bandit
        if bandit.enabled and bandit.feedback_url is None:
            yield ConfigIssue(_key("models", name, "bandit", "feedbackUrl"),
                              "required when workloads.feedback.enabled is false (no in-cluster endpoint to "
                              "default to)")


def check(cfg: PlatformConfig) -> list[ConfigIssue]:
    return [issue for _desc, fn in RULES for issue in fn(cfg)]
