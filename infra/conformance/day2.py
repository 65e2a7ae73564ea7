"""Day 2: inputs that AWS (or a controller) changes on its own must not make the next preview replace,
shrink or downgrade anything. Each rule names the resource and the input; the fix is the documented
one: a version prefix the service upgrades within, or `ignore_changes` on the input the service owns.

Sources:
- RDS: Amazon RDS User Guide, USER_UpgradeDBInstance.Upgrading.html ("Automatically upgrading the
  minor engine version") and USER_PIOPS.Autoscaling.html (storage autoscaling raises allocated storage);
  the provider's `aws.rds.Instance` reference (pulumi/pulumi-aws, docs of `engineVersion`: with
  `autoMinorVersionUpgrade` a prefix such as "16" may be given, the running version is
  `engineVersionActual`; "allocatedStorage" changes under storage autoscaling). RDS refuses to lower
  allocated storage and to downgrade an engine.
- ElastiCache: the provider's `aws.elasticache.ReplicationGroup` reference (`engineVersion`: for Redis
  OSS 6 and later, major.minor or `6.x`; AWS applies patch versions itself, `engineVersionActual`).
- MSK: Amazon MSK Developer Guide, msk-autoexpand.html (storage auto-scaling grows broker volumes; a
  volume cannot shrink).
- EKS: managed-node-groups.md and cluster-autoscaler.md (Amazon EKS User Guide): the autoscaler sets the
  Auto Scaling group's desired size; terraform-aws-modules/terraform-aws-eks ignores
  `scaling_config[0].desired_size` for that reason.
"""

from __future__ import annotations

import re

from infra.conformance.aws_graph import NODE_GROUP, RELEASE, AwsGraph, Node
from infra.conformance.model import Problem

CHECK = "day2"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
MSK_CLUSTER = "aws:msk/cluster:Cluster"
SCALING_TARGET = "aws:appautoscaling/target:Target"
MSK_VOLUME = "brokerNodeGroupInfo.storageInfo.ebsStorageInfo.volumeSize"
MSK_STORAGE_DIMENSION = "kafka:broker-storage:VolumeSize"


def ignored(node: Node, path: str) -> bool:
    """Whether `ignore_changes` covers `path` (the path itself or a property above it)."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in node.ignore_changes for i in range(1, len(parts) + 1))


def _problem(node: Node, field: str, message: str) -> Problem:
    return Problem(CHECK, f"{node.ref} .{field}", message)


def _auto_minor(node: Node) -> bool:
    return node.inputs.get("autoMinorVersionUpgrade", True) is not False


def engine_problems(graph: AwsGraph) -> list[Problem]:
    problems: list[Problem] = []
    for node in graph.of_type(RDS_INSTANCE) + graph.of_type(RDS_CLUSTER):
        version = str(node.inputs.get("engineVersion") or "")
        # PostgreSQL 10+ and MySQL 8.0+ minors: "16.10" / "8.0.39" are exact; "16" / "8.0" are prefixes.
        exact = bool(re.fullmatch(r"\d+\.\d+", version)) if node.inputs.get("engine", "").startswith(
            ("postgres", "aurora-postgresql")) else version.count(".") >= 2
        if version and exact and _auto_minor(node) and not ignored(node, "engineVersion"):
            problems.append(_problem(node, "engineVersion", f"pins {version!r} while autoMinorVersionUpgrade "
                                     "lets RDS upgrade the minor version: the next preview tries a downgrade, which "
                                     "RDS refuses; give the major version only (the running one is "
                                     "engineVersionActual) or ignore changes to engineVersion"))
    for node in graph.of_type(REPLICATION_GROUP):
        version = str(node.inputs.get("engineVersion") or "")
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
        if match and int(match.group(1)) >= 6 and _auto_minor(node) and not ignored(node, "engineVersion"):
            problems.append(_problem(node, "engineVersion", f"pins the patch version {version!r}; ElastiCache "
                                     "applies patch upgrades itself (Redis OSS 6+): give major.minor"))
    return problems


def storage_problems(graph: AwsGraph) -> list[Problem]:
    problems: list[Problem] = []
    for node in graph.of_type(RDS_INSTANCE):
        ceiling = node.inputs.get("maxAllocatedStorage") or 0
        if ceiling and ceiling > (node.inputs.get("allocatedStorage") or 0) and not ignored(node, "allocatedStorage"):
            problems.append(_problem(node, "allocatedStorage", "storage autoscaling (maxAllocatedStorage "
                                     f"{ceiling:g}) raises it; without ignore_changes the next preview tries to "
                                     "shrink the volume, which RDS refuses"))
    grows_msk = any(t.inputs.get("scalableDimension") == MSK_STORAGE_DIMENSION for t in graph.of_type(SCALING_TARGET))
    for node in graph.of_type(MSK_CLUSTER):
        if grows_msk and not ignored(node, MSK_VOLUME):
            problems.append(_problem(node, MSK_VOLUME, "MSK storage auto-scaling grows the broker volume; without "
                                     "ignore_changes the next preview tries to shrink it"))
    return problems


def node_group_problems(graph: AwsGraph) -> list[Problem]:
    autoscaled = any(r.inputs.get("chart") == "cluster-autoscaler" for r in graph.of_type(RELEASE)) or any(
        "k8s.io/cluster-autoscaler/enabled" in (g.inputs.get("tags") or {}) for g in graph.of_type(NODE_GROUP))
    if not autoscaled:
        return []
    return [_problem(g, "scalingConfig.desiredSize", "cluster-autoscaler sets the desired size; without "
                     "ignore_changes the next `pulumi up` resets it and evicts or strands pods")
            for g in graph.of_type(NODE_GROUP)
            if g.inputs.get("scalingConfig") and not ignored(g, "scalingConfig.desiredSize")]


def check(graph: AwsGraph) -> list[Problem]:
    return engine_problems(graph) + storage_problems(graph) + node_group_problems(graph)
