"""Environment tiers live in config: every environment-dependent choice is a typed key that the
components read; none of them looks at the environment's name.

- each shipped stack produces its tier's resource inputs;
- a dev stack given prod's values for these keys produces prod's inputs, so the key decides, not the
  name `prod`;
- a branch on the environment name (or on `protect` standing in for it) cannot come back into infra/.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.offline.synth import Synthesis, synthesize
from stacks.config import load_stack_file, stack_file

ROOT = Path(__file__).resolve().parents[2]
# Every key that used to be an environment branch in a component.
TIER_KEYS = (
    "secrets.recoveryWindowDays",
    "dataKeys.deletionWindowDays",
    "cluster.volumeReclaimPolicy",
    "redis.finalSnapshot",
    "redis.applyImmediately",
    "kafka.enhancedMonitoring",
    "database.finalSnapshot",
    "database.deleteAutomatedBackups",
    "database.applyImmediately",
    "workloads.modelServerRepository.forceDelete",
    "workloads.observability.alertmanagerReplicas",
    "workloads.tracing.samplingRatio",
)
# The resource inputs those keys decide, per tier (physical names with the environment as `<env>`).
EXPECTED = {
    "dev": {
        "secretRecoveryWindows": [0], "dataKeyDeletionWindows": [7], "reclaimPolicy": "Delete",
        "redisFinalSnapshot": None, "redisApplyImmediately": True, "kafkaEnhancedMonitoring": "DEFAULT",
        "databaseSkipFinalSnapshot": True, "databaseFinalSnapshot": None, "databaseDeleteAutomatedBackups": True,
        "databaseApplyImmediately": True, "ecrForceDelete": True, "alertmanagerReplicas": 1,
        "seldonTraceRatio": 1,
    },
    "staging": {
        "secretRecoveryWindows": [30], "dataKeyDeletionWindows": [7], "reclaimPolicy": "Delete",
        "redisFinalSnapshot": "mlplatform-<env>-feast-final", "redisApplyImmediately": True,
        "kafkaEnhancedMonitoring": "DEFAULT", "databaseSkipFinalSnapshot": False,
        "databaseFinalSnapshot": "mlplatform-<env>-mlflow-final", "databaseDeleteAutomatedBackups": True,
        "databaseApplyImmediately": True, "ecrForceDelete": True, "alertmanagerReplicas": 1,
        "seldonTraceRatio": 1,
    },
    "prod": {
        "secretRecoveryWindows": [30], "dataKeyDeletionWindows": [30], "reclaimPolicy": "Retain",
        "redisFinalSnapshot": "mlplatform-<env>-feast-final", "redisApplyImmediately": False,
        "kafkaEnhancedMonitoring": "PER_TOPIC_PER_BROKER", "databaseSkipFinalSnapshot": False,
        "databaseFinalSnapshot": "mlplatform-<env>-mlflow-final", "databaseDeleteAutomatedBackups": False,
        "databaseApplyImmediately": False, "ecrForceDelete": False, "alertmanagerReplicas": 2,
        "seldonTraceRatio": 0.1,
    },
}


def tier_inputs(s: Synthesis) -> dict[str, Any]:
    """The inputs the tier keys decide, read from the synthesized resources."""
    def named(value: str | None) -> str | None:
        return value.replace(f"mlplatform-{s.stack}-", "mlplatform-<env>-") if value else None

    redis = s.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    database = s.one("aws:rds/instance:Instance").inputs
    values = {r.name: r.inputs["values"] for r in s.of_type("kubernetes:helm.sh/v3:Release")}
    return {
        "secretRecoveryWindows": sorted({r.inputs["recoveryWindowInDays"]
                                         for r in s.of_type("aws:secretsmanager/secret:Secret")}),
        "dataKeyDeletionWindows": sorted({r.inputs["deletionWindowInDays"] for r in s.of_type("aws:kms/key:Key")
                                          if r.name.startswith("data-keys-")}),
        "reclaimPolicy": s.one("kubernetes:storage.k8s.io/v1:StorageClass").inputs["reclaimPolicy"],
        "redisFinalSnapshot": named(redis.get("finalSnapshotIdentifier")),
        "redisApplyImmediately": redis["applyImmediately"],
        "kafkaEnhancedMonitoring": s.one("aws:msk/cluster:Cluster").inputs["enhancedMonitoring"],
        "databaseSkipFinalSnapshot": database["skipFinalSnapshot"],
        "databaseFinalSnapshot": named(database.get("finalSnapshotIdentifier")),
        "databaseDeleteAutomatedBackups": database["deleteAutomatedBackups"],
        "databaseApplyImmediately": database["applyImmediately"],
        "ecrForceDelete": s.one("aws:ecr/repository:Repository").inputs["forceDelete"],
        "alertmanagerReplicas": values["kube-prometheus-stack"]["alertmanager"]["alertmanagerSpec"]["replicas"],
        "seldonTraceRatio": values["seldon-core-v2-setup"]["opentelemetry"]["ratio"],
    }


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _tier_values(env: str) -> dict[str, Any]:
    """The effective value of each tier key in a shipped stack (as validated, defaults applied)."""
    dumped = load_stack_file(stack_file(env)).model_dump(by_alias=True, mode="json")
    return {key: _get(dumped, key) for key in TIER_KEYS}


def test_every_tier_key_differs_between_dev_and_prod():
    """Otherwise the dev-with-prod-values test below would prove nothing for that key."""
    dev, prod = _tier_values("dev"), _tier_values("prod")
    assert [k for k in TIER_KEYS if dev[k] == prod[k]] == []


def test_each_stack_produces_its_tier_inputs(synth, env):
    assert tier_inputs(synth(env)) == EXPECTED[env]


@pytest.fixture(scope="module")
def dev_with_prod_values() -> Synthesis:
    flat = copy.deepcopy(yaml.safe_load(stack_file("dev").read_text())["config"])
    for key, value in _tier_values("prod").items():
        section, *path = key.split(".")
        target = flat.setdefault(f"mlplatform:{section}", {})
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return synthesize("dev", flat)


def test_dev_stack_with_prod_values_gets_prod_inputs(dev_with_prod_values, synth):
    assert dev_with_prod_values.config["mlplatform:environment"] == "dev"
    assert tier_inputs(dev_with_prod_values) == tier_inputs(synth("prod")) == EXPECTED["prod"]


# A comparison with a tier name, an `is_prod`-style helper, a dict keyed by tier names, or a choice
# derived from `protect` instead of its own key. Names, tags and descriptions that only *contain*
# the environment (f"... ({ctx.env})") are fine.
TIER = r"""["'](?:dev|staging|prod)["']"""
FORBIDDEN = {
    "comparison with a tier name": re.compile(rf"(?:==|!=)\s*{TIER}|{TIER}\s*(?:==|!=)"),
    "membership test on tier names": re.compile(rf"\bin\s*[(\[{{]\s*{TIER}"),
    "mapping keyed by tier name": re.compile(rf"[{{,]\s*{TIER}\s*:"),
    "environment comparison": re.compile(r"(?:\.env|\.environment|\benvironment)\s*(?:==|!=|(?:not\s+)?in\b)"),
    "Environment member": re.compile(r"\bEnvironment\.(?:DEV|STAGING|PROD)\b"),
    "is_prod-style helper": re.compile(r"\bis_(?:dev|staging|prod)\b"),
    "choice derived from protect": re.compile(r"\bif\s+(?:not\s+)?ctx\.protect\b|\bnot\s+ctx\.protect\b"),
}


def environment_branches(text: str) -> list[str]:
    return [f"{line_no}: {why}: {line.strip()}"
            for line_no, line in enumerate(text.splitlines(), 1)
            for why, pattern in FORBIDDEN.items() if pattern.search(line.split("#", 1)[0])]


def test_no_environment_branches_in_infra():
    found = [f"{path.relative_to(ROOT)}:{hit}"
             for path in [*sorted((ROOT / "infra").rglob("*.py")), ROOT / "__main__.py"]
             for hit in environment_branches(path.read_text())]
    assert found == [], "environment-dependent choices belong in typed config keys:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    'recovery_window_in_days=0 if ctx.env == "dev" else 30,',
    'enhanced_monitoring="PER_TOPIC_PER_BROKER" if ctx.cfg.is_prod else "DEFAULT",',
    'if cfg.environment != Environment.DEV:',
    'deletion_window_in_days=30 if ctx.protect else 7,',
    'apply_immediately=not ctx.protect,',
    'replicas = {"dev": 1, "prod": 2}[ctx.env]',
    'if ctx.env in ("staging", "prod"):',
    'if self._ctx.cfg.environment not in TIERS:',
])
def test_branch_checker_catches(line):
    assert environment_branches(line)


@pytest.mark.parametrize("line", [
    'description=f"Feast online store ({ctx.env})",',
    'opts=pulumi.ResourceOptions(parent=self, protect=ctx.protect, retain_on_delete=ctx.protect)',
    'pulumi.export("environment", ctx.env)',
    'for env in container.get("env") or []:',
])
def test_branch_checker_allows_naming_and_protect_options(line):
    assert environment_branches(line) == []
