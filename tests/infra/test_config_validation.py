"""Every validation rule has a failing example with the message asserted (and the key named)."""

from __future__ import annotations

import ast
import contextlib
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks import rules as rules_module
from stacks.config import ConfigError, from_flat_config, load_stack_file, stack_file
from stacks.rules import RULES


def _base(env: str) -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(stack_file(env).read_text())["config"])


def _errors(flat: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_flat_config(flat)
    return [str(i) for i in info.value.issues]


def _set(flat: dict[str, Any], dotted: str | tuple[str, ...], value: Any) -> dict[str, Any]:
    """Set one dotted key, or several (a tuple of keys with a tuple of values: a rule about two settings)."""
    if isinstance(dotted, tuple):
        for key, one in zip(dotted, value, strict=True):
            _set(flat, key, one)
        return flat
    section, *rest = dotted.split(".")
    target = flat.setdefault(f"mlplatform:{section}", {})
    if not rest:
        flat[f"mlplatform:{section}"] = value
        return flat
    for part in rest[:-1]:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    target[rest[-1]] = value
    return flat


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_shipped_stacks_are_valid(env):
    assert load_stack_file(stack_file(env)).environment == env


# (env, key to change, new value, expected key path in the message, expected message fragment)
CASES = [
    ("prod", "network.availabilityZones", ["eu-west-1a", "eu-west-1b"], "mlplatform:network.availabilityZones",
     "prod needs exactly 3 availability zones"),
    ("prod", "network.natGateways", "single", "mlplatform:network.natGateways",
     "prod needs one NAT gateway per AZ: got 'single', allowed: 'perAz'"),
    ("dev", "network.natGateways", "two", "mlplatform:network.natGateways", "Input should be 'single' or 'perAz'"),
    ("dev", "network.availabilityZones", ["eu-west-1a", "eu-west-1a", "eu-west-1b"],
     "mlplatform:network.availabilityZones", "zones must be distinct"),
    ("dev", "network.availabilityZones", ["us-east-1a", "us-east-1b", "us-east-1c"],
     "mlplatform:network.availabilityZones", "are not zones of region 'eu-west-1'"),
    ("dev", "network.vpcCidr", "10.10.0.0/33", "mlplatform:network.vpcCidr", "valid IPv4 network"),
    ("dev", "network.privateSubnetCidrs", ["10.10.32.0/19", "10.10.64.0/19", "10.10.0.0/24"],
     "mlplatform:network.privateSubnetCidrs[2]", "overlaps publicSubnetCidrs[0]"),
    ("dev", "network.isolatedSubnetCidrs", ["10.10.12.0/24", "10.10.13.0/24", "10.99.0.0/24"],
     "mlplatform:network.isolatedSubnetCidrs.2", "outside the VPC CIDR 10.10.0.0/16"),
    ("dev", "network.publicSubnetCidrs", ["10.10.0.0/22"], "mlplatform:network.publicSubnetCidrs",
     "needs one CIDR per availability zone (3), got 1"),
    ("dev", "nodeGroups.general.minSize", 5, "mlplatform:nodeGroups.general",
     "needs minSize <= desiredSize <= maxSize, got 5 / 2 / 4"),
    ("prod", "nodeGroups.gpu.instanceTypes", ["m6i.xlarge"], "mlplatform:nodeGroups.gpu.instanceTypes",
     "GPU group has non-GPU instance types ['m6i.xlarge']"),
    ("prod", "nodeGroups.general.capacityType", "SPOT", "mlplatform:nodeGroups.general.capacityType",
     "SPOT is allowed only in dev"),
    ("dev", "nodeGroups.system.capacityType", "SPOT", "mlplatform:nodeGroups.system.capacityType",
     "never for the system group"),
    ("dev", "nodeGroups.system.role", "general", "mlplatform:nodeGroups", "needs a node group with role 'system'"),
    ("dev", "nodeGroups.general.color", "blue", "mlplatform:nodeGroups.general.color",
     "unknown key; allowed keys here: capacityType, desiredSize, diskSizeGib, instanceTypes, labels"),
    ("dev", "cluster.kubernetesVersion", "1.20", "mlplatform:cluster.kubernetesVersion",
     "'1.20' is not supported; allowed: 1.33, 1.34, 1.35"),
    ("dev", "cluster.logTypes", ["api"], "mlplatform:cluster.logTypes", "must include ['audit', 'authenticator']"),
    ("prod", "cluster.endpointPublicAccess", True, "mlplatform:cluster.publicAccessCidrs",
     "prod with a public endpoint needs restricted CIDRs"),
    ("dev", "cluster.publicAccessCidrs", [], "mlplatform:cluster.publicAccessCidrs",
     "a public endpoint needs at least one CIDR"),
    ("prod", "redis.replicasPerShard", 0, "mlplatform:redis.replicasPerShard", "prod needs >= 1 replica, got 0"),
    ("staging", "redis.multiAz", False, "mlplatform:redis.multiAz", "staging needs Multi-AZ with automatic failover"),
    ("prod", "redis.snapshotRetentionDays", 3, "mlplatform:redis.snapshotRetentionDays", "prod needs >= 7, got 3"),
    ("dev", "redis.multiAz", True, "mlplatform:redis.multiAz", "Multi-AZ failover needs replicasPerShard >= 1"),
    ("prod", "kafka.brokerCount", 4, "mlplatform:kafka.brokerCount",
     "4 is not a multiple of the 3 availability zones"),
    ("dev", "kafka.maxEbsVolumeGib", 10, "mlplatform:kafka.maxEbsVolumeGib", "must be >= ebsVolumeGib"),
    ("staging", "kafka.topics.0.replicationFactor", 2, "mlplatform:kafka.topics.0.replicationFactor",
     "staging needs >= 3 (min.insync.replicas=2), got 2"),
    ("prod", "database.backupWindow", "02:00-03:00", "mlplatform:database.backupWindow",
     "'02:00-03:00' overlaps maintenanceWindow 'sun:02:30-sun:03:30'"),
    ("dev", "database.backupWindow", "01:00-01:15", "mlplatform:database.backupWindow", "must last >= 30 minutes"),
    ("dev", "kafka.topics.0.replicationFactor", 6, "mlplatform:kafka.topics.0.replicationFactor",
     "6 exceeds brokerCount 3"),
    ("prod", "storage.accessLogging", False, "mlplatform:storage.accessLogging", "prod needs bucket access logging"),
    ("staging", "storage.forceDestroy", True, "mlplatform:storage.forceDestroy", "allowed only in dev"),
    ("prod", "database.backupRetentionDays", 0, "mlplatform:database.backupRetentionDays",
     "prod needs >= 7 days, got 0"),
    ("prod", "database.multiAz", False, "mlplatform:database.multiAz", "prod needs Multi-AZ"),
    ("prod", "workloads.pipelines.database", "inCluster", "mlplatform:workloads.pipelines.database",
     "prod needs `managed`"),
    ("prod", "database.deletionProtection", False, "mlplatform:database.deletionProtection",
     "prod needs deletion protection"),
    ("staging", "database.backupRetentionDays", 2, "mlplatform:database.backupRetentionDays",
     "staging needs >= 3 days, got 2"),
    ("dev", "database.backupRetentionDays", 0, "mlplatform:database.backupRetentionDays",
     "dev needs >= 1 day, got 0"),
    ("prod", "database.finalSnapshot", False, "mlplatform:database.finalSnapshot",
     "prod needs a final snapshot (true)"),
    ("prod", "database.deleteAutomatedBackups", True, "mlplatform:database.deleteAutomatedBackups",
     "prod keeps automated backups (false)"),
    ("prod", "database.applyImmediately", True, "mlplatform:database.applyImmediately", "prod needs false"),
    ("prod", "redis.finalSnapshot", False, "mlplatform:redis.finalSnapshot", "prod needs a final snapshot (true)"),
    ("prod", "redis.applyImmediately", True, "mlplatform:redis.applyImmediately", "prod needs false"),
    ("prod", "secrets.recoveryWindowDays", 0, "mlplatform:secrets.recoveryWindowDays", "prod needs >= 7, got 0"),
    ("dev", "secrets.recoveryWindowDays", 3, "mlplatform:secrets.recoveryWindowDays",
     "must be 0 or 7 to 30, got 3"),
    ("dev", "secrets.recoveryWindowDays", 31, "mlplatform:secrets.recoveryWindowDays",
     "less than or equal to 30"),
    ("prod", "cluster.volumeReclaimPolicy", "Delete", "mlplatform:cluster.volumeReclaimPolicy",
     "prod needs 'Retain', got 'Delete'"),
    ("dev", "cluster.volumeReclaimPolicy", "Recycle", "mlplatform:cluster.volumeReclaimPolicy",
     "Input should be 'Retain' or 'Delete'"),
    ("prod", "workloads.modelServerRepository.forceDelete", True,
     "mlplatform:workloads.modelServerRepository.forceDelete", "prod needs false"),
    ("prod", "dataKeys.deletionWindowDays", 7, "mlplatform:dataKeys.deletionWindowDays",
     "prod needs >= 30 days, got 7"),
    ("prod", "cluster.secretsKeyDeletionWindowDays", 10, "mlplatform:cluster.secretsKeyDeletionWindowDays",
     "prod needs >= 30 days, got 10"),
    ("dev", "dataKeys.deletionWindowDays", 3, "mlplatform:dataKeys.deletionWindowDays",
     "greater than or equal to 7"),
    ("prod", "workloads.observability.alertmanagerReplicas", 1,
     "mlplatform:workloads.observability.alertmanagerReplicas", "prod needs >= 2, got 1"),
    ("dev", "kafka.enhancedMonitoring", "VERBOSE", "mlplatform:kafka.enhancedMonitoring",
     "Input should be 'DEFAULT', 'PER_BROKER', 'PER_TOPIC_PER_BROKER' or 'PER_TOPIC_PER_PARTITION'"),
    ("dev", "workloads.tracing.samplingRatio", 1.5, "mlplatform:workloads.tracing.samplingRatio",
     "less than or equal to 1"),
    ("dev", "database.maxAllocatedStorageGib", 20, None, None),  # equal sizes are fine
    ("dev", "database.allocatedStorageGib", 100, "mlplatform:database.maxAllocatedStorageGib",
     "must be >= allocatedStorageGib"),
    ("prod", "protectStatefulResources", False, "mlplatform:protectStatefulResources", "prod needs true"),
    ("prod", "workloads.mlflow.replicas", 1, "mlplatform:workloads.mlflow.replicas", "prod needs >= 2, got 1"),
    ("prod", "workloads.feedback.replicas", 1, "mlplatform:workloads.feedback.replicas", "prod needs >= 2, got 1"),
    ("dev", ("workloads.feedback.enabled", "models.recommendation.bandit"), (False, {"enabled": True}),
     "mlplatform:models.recommendation.bandit.feedbackUrl", "required when workloads.feedback.enabled is false"),
    ("dev", ("workloads.feedback.enabled", "models.recommendation.bandit"),
     (False, {"enabled": True, "feedbackUrl": "http://outcomes.apps.svc.cluster.local:8080"}), None, None),
    ("dev", "workloads.feedback.resources.cpuRequest", "2", "mlplatform:workloads.feedback.resources.cpuRequest",
     "2 is above the cpu limit 1"),  # keys left out of a given `resources` take the type's defaults
    ("dev", "workloads.tracing.storage", "opensearch", "mlplatform:workloads.tracing.opensearchUrl",
     "required when storage is 'opensearch'"),
    ("dev", "models.fraud.experiment.challengerWeight", 10, "mlplatform:models.fraud.experiment",
     "weights must add up to 100, got 110"),
    ("dev", "models.fraud.minReplicas", 5, "mlplatform:models.fraud", "needs minReplicas <= maxReplicas"),
    ("dev", "models.fraud.qualityGates", {"auk": 0.95}, "mlplatform:models.fraud.qualityGates.auk",
     "fraud's evaluation produces no metric 'auk'; allowed: auc, pr_auc, precision, recall, f1"),
    ("prod", "models.recommendation.qualityGates", {"ndcg@10": 0.3, "ndcg_at_10": 0.3},
     "mlplatform:models.recommendation.qualityGates.ndcg_at_10", "allowed: ndcg@10, recall@10"),
    ("dev", "environment", "qa", "mlplatform:environment", "Input should be 'dev', 'staging' or 'prod'"),
    ("dev", "database.instanceClass", "m5.large", "mlplatform:database.instanceClass", "should match pattern"),
    ("dev", "network.availabilityZones", ["eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"],
     "mlplatform:network.availabilityZones", "use 2 or 3 availability zones, got 4"),
    ("dev", "network.availabilityZones", ["eu-west-1a", "eu-west-1b"], "mlplatform:network.availabilityZones",
     "MSK brokers must span at least 3 availability zones, got 2"),
    ("dev", "network.flowLogs.enabled", False, "mlplatform:network.flowLogs.enabled", "dev needs VPC flow logs"),
    ("prod", "workloads.gitops.promotion", "commit", "mlplatform:workloads.gitops.promotion",
     "prod needs 'pullRequest' (a reviewed change is the manual approval), got 'commit'"),
    ("prod", "governance.promotion", "gates", "mlplatform:governance.promotion",
     "prod needs 'gatesAndApproval', got 'gates'"),
    ("staging", "cluster.publicAccessCidrs", ["0.0.0.0/0"], "mlplatform:cluster.publicAccessCidrs",
     "staging with a public endpoint needs restricted CIDRs"),
    ("prod", "cluster.publicAccessCidrs", ["203.0.113.0/24"], "mlplatform:cluster.publicAccessCidrs",
     "set only when endpointPublicAccess is true"),
    ("dev", "cluster.publicAccessCidrs", ["10.0.0.0/8", "203.0.113.0/24"], "mlplatform:cluster.publicAccessCidrs",
     "['10.0.0.0/8'] are private ranges"),
    ("staging", "kafka.brokerCount", 2, "mlplatform:kafka.brokerCount", "staging needs >= 3 brokers"),
    ("dev", "database.backupWindow", "01:00-01:00", "mlplatform:database.backupWindow", "starts when it ends"),
    ("dev", "database.maintenanceWindow", "sun:05:00-sun:05:15", "mlplatform:database.maintenanceWindow",
     "must last >= 30 minutes (AWS)"),
    ("dev", "redis.snapshotWindow", "03:00-03:30", "mlplatform:redis.snapshotWindow", "must last >= 60 minutes (AWS)"),
    ("dev", "redis.maintenanceWindow", "sun:05:00-tue:06:00", "mlplatform:redis.maintenanceWindow",
     "must last <= 24 hours (AWS)"),
    ("dev", "redis.snapshotWindow", "04:30-05:30", "mlplatform:redis.snapshotWindow",
     "'04:30-05:30' overlaps maintenanceWindow 'sun:05:00-sun:06:00'"),
    ("dev", "redis.maintenanceWindow", "sat:23:30-sun:03:30", "mlplatform:redis.snapshotWindow",
     "overlaps maintenanceWindow"),  # across midnight and the end of the week
    ("dev", "workloads.mlflow.resources.cpuRequest", "2", "mlplatform:workloads.mlflow.resources.cpuRequest",
     "2 is above the cpu limit 1"),
    ("dev", "workloads.seldon.resources.memoryRequest", "2Gi", "mlplatform:workloads.seldon.resources.memoryRequest",
     "2Gi is above the memory limit 1Gi"),
    ("dev", "secrets.recoveryWindowDays", 3, "mlplatform:secrets.recoveryWindowDays", "must be 0 or 7 to 30, got 3"),
]


@pytest.mark.parametrize(("env", "key", "value", "path", "fragment"), CASES,
                         ids=[f"{c[0]}:{c[1]}={c[2]}" for c in CASES])
def test_rule_rejects_with_key_and_reason(env, key, value, path, fragment):
    flat = _set(_base(env), key, value)
    if path is None:
        from_flat_config(flat)
        return
    errors = _errors(flat)
    assert any(e.startswith(path + ":") and fragment in e for e in errors), errors


def test_unknown_top_level_key_is_rejected():
    flat = _base("dev")
    flat["mlplatform:netwrk"] = {}
    errors = _errors(flat)
    assert any(e.startswith("mlplatform:netwrk: unknown key; allowed keys here: cluster, dataKeys, database")
               for e in errors)


def test_foreign_namespace_and_missing_region():
    flat = _base("dev")
    flat["mlplatfrom:environment"] = "dev"
    del flat["aws:region"]
    errors = _errors(flat)
    assert any(e.startswith("mlplatfrom:environment: unknown key") for e in errors)
    assert "aws:region: is required (e.g. eu-west-1)" in errors


def test_missing_section_is_named():
    flat = _base("dev")
    del flat["mlplatform:redis"]
    assert "mlplatform:redis: is required" in _errors(flat)


def test_all_problems_reported_at_once():
    flat = _set(_set(_base("prod"), "network.natGateways", "single"), "redis.replicasPerShard", 0)
    errors = _errors(flat)
    assert any("natGateways" in e for e in errors) and any("replicasPerShard" in e for e in errors)


def _issue_sites() -> list[tuple[str, int, int]]:
    """(rule function, first line, last line) of every `ConfigIssue(...)` a rule in stacks/rules.py yields."""
    tree = ast.parse(Path(rules_module.__file__).read_text())
    return [(fn.name, node.lineno, node.end_lineno or node.lineno)
            for fn in tree.body if isinstance(fn, ast.FunctionDef)
            for node in ast.walk(fn) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ConfigIssue"]


def test_every_rule_and_every_branch_has_a_failing_case():
    """Each way a cross-field rule can fail (each `ConfigIssue` it yields) is reached by one of the CASES
    above, whose key and message `test_rule_rejects_with_key_and_reason` asserts. Structural cases
    count as well; none is skipped."""
    sites = _issue_sites()
    assert {name for name, _first, _last in sites} >= {fn.__name__ for _desc, fn in RULES}
    executed: set[int] = set()

    def local(frame, event, _arg):
        if event == "line":
            executed.add(frame.f_lineno)
        return local

    def tracer(frame, _event, _arg):
        return local if frame.f_code.co_filename == rules_module.__file__ else None

    sys.settrace(tracer)
    try:
        for env, key, value, _path, _fragment in CASES:
            with contextlib.suppress(ConfigError):
                from_flat_config(_set(_base(env), key, value))
    finally:
        sys.settrace(None)
    missing = [f"{name} (line {first})" for name, first, last in sites
               if not executed & set(range(first, last + 1))]
    assert missing == [], f"rule branches without a failing case: {missing}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], capture_output=True, text=True, timeout=60)


def _write(tmp_path: Path, flat: dict[str, Any]) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": flat}))
    return path


@pytest.mark.parametrize(("env", "key", "value", "needle"), [
    ("prod", "network.availabilityZones", ["eu-west-1a", "eu-west-1b"], "mlplatform:network.availabilityZones"),
    ("prod", "network.natGateways", "single", "mlplatform:network.natGateways"),
    ("dev", "nodeGroups.general.minSize", 9, "mlplatform:nodeGroups.general"),
    ("prod", "nodeGroups.gpu.instanceTypes", ["c6i.xlarge"], "mlplatform:nodeGroups.gpu.instanceTypes"),
    ("dev", "nodeGroups.general.spotPrice", "1", "mlplatform:nodeGroups.general.spotPrice: unknown key"),
    ("dev", "network.vpcCidr", "10.10.0.0/99", "mlplatform:network.vpcCidr"),
    ("prod", "redis.replicasPerShard", 0, "mlplatform:redis.replicasPerShard"),
    ("prod", "kafka.brokerCount", 4, "mlplatform:kafka.brokerCount"),
    ("prod", "database.backupRetentionDays", 0, "mlplatform:database.backupRetentionDays"),
])
@pytest.mark.integration
def test_validate_config_cli_rejects(tmp_path, env, key, value, needle):
    result = _cli("validate-config", str(_write(tmp_path, _set(_base(env), key, value))))
    assert result.returncode == 1
    assert needle in result.stderr


@pytest.mark.integration
def test_validate_config_cli_accepts_and_reports_unreadable_files(tmp_path):
    ok = _cli("validate-config", str(stack_file("prod")))
    assert ok.returncode == 0 and "valid (prod" in ok.stdout
    broken = tmp_path / "Pulumi.bad.yaml"
    broken.write_text("config: [unclosed")
    result = _cli("validate-config", str(broken))
    assert result.returncode == 1 and "is not valid YAML" in result.stderr
    missing = _cli("validate-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
