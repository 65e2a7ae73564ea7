"""Rules that both the stack-config validation and the policy pack enforce are stated once
(contracts/guardrails.py): the pack's defaults are those values, the committed policy configs do not
restate them, and at each tier's boundary both sides give the same verdict."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from contracts import guardrails
from infra.offline.policy_eval import Plan, evaluate
from policies.config import CONFIG_DIR, resolve
from policies.examples import REDIS, REDIS_OK, res
from policies.rules import ALL_RULES, RULES_BY_NAME
from stacks.config import ConfigError, from_flat_config, stack_file

RDS = "aws:rds/instance:Instance"
KMS_KEY = "aws:kms/key:Key"
# Policy property -> the guard rail it must default to.
SHARED_DEFAULTS = {
    ("redis-multi-az", "environments"): list(guardrails.REDIS_MULTI_AZ_TIERS),
    ("rds-multi-az", "environments"): list(guardrails.DATABASE_MULTI_AZ_TIERS),
    ("rds-deletion-protection", "environments"): list(guardrails.PROTECTED_TIERS),
    ("protect-stateful-resources", "environments"): list(guardrails.PROTECTED_TIERS),
    ("rds-backups", "minimumRetentionDays"): dict(guardrails.MIN_BACKUP_RETENTION_DAYS),
    ("kms-deletion-window", "minimumDays"): dict(guardrails.MIN_KMS_DELETION_WINDOW_DAYS),
    ("eks-control-plane-logging", "requiredLogTypes"): list(guardrails.REQUIRED_CONTROL_PLANE_LOGS),
}


@pytest.mark.parametrize(("rule", "prop"), sorted(SHARED_DEFAULTS))
def test_policy_defaults_are_the_guardrails(rule, prop):
    assert RULES_BY_NAME[rule].config[prop]["default"] == SHARED_DEFAULTS[rule, prop]


def test_committed_policy_configs_do_not_restate_shared_values():
    for path in sorted(CONFIG_DIR.glob("*.json")):
        for rule, entry in json.loads(path.read_text()).items():
            props = set(entry) if isinstance(entry, dict) else set()
            restated = {prop for r, prop in SHARED_DEFAULTS if r == rule} & props
            assert not restated, f"{path.name}: {rule} restates {restated}; change contracts/guardrails.py instead"


def _policy_flags(rule: str, resource: Any, env: str) -> bool:
    plan = Plan(stack=env, environment=env, resources=[resource])
    return bool(evaluate(plan, resolve({}, ALL_RULES), [RULES_BY_NAME[rule]]))


def _config_rejects(env: str, section: str, key: str, value: Any) -> bool:
    flat = copy.deepcopy(yaml.safe_load(stack_file(env).read_text())["config"])
    flat.setdefault(f"mlplatform:{section}", {})[key] = value
    try:
        from_flat_config(flat)
    except ConfigError as exc:
        return any(i.path == f"mlplatform:{section}.{key}" for i in exc.issues)
    return False


@pytest.mark.parametrize("env", guardrails.TIERS)
def test_backup_retention_boundary_is_the_same_on_both_sides(env):
    minimum = guardrails.MIN_BACKUP_RETENTION_DAYS[env]
    for days, rejected in ((minimum - 1, True), (minimum, False)):
        db = res(RDS, "db", backupRetentionPeriod=days)
        assert _policy_flags("rds-backups", db, env) is rejected, (env, days)
        assert _config_rejects(env, "database", "backupRetentionDays", days) is rejected, (env, days)


@pytest.mark.parametrize("env", guardrails.TIERS)
def test_kms_deletion_window_boundary_is_the_same_on_both_sides(env):
    minimum = guardrails.MIN_KMS_DELETION_WINDOW_DAYS[env]
    cases = ((minimum - 1, True), (minimum, False)) if minimum > 7 else ((minimum, False),)
    for days, rejected in cases:
        key = res(KMS_KEY, "key", deletionWindowInDays=days)
        assert _policy_flags("kms-deletion-window", key, env) is rejected, (env, days)
        assert _config_rejects(env, "dataKeys", "deletionWindowDays", days) is rejected, (env, days)


@pytest.mark.parametrize("env", guardrails.TIERS)
def test_redis_failover_tiers_are_the_same_on_both_sides(env):
    single = res(REDIS, "cache", **{**REDIS_OK, "multiAzEnabled": False, "automaticFailoverEnabled": False,
                                    "numCacheClusters": 1})
    required = env in guardrails.REDIS_MULTI_AZ_TIERS
    assert _policy_flags("redis-multi-az", single, env) is required
    assert _config_rejects(env, "redis", "multiAz", False) is required


def test_unknown_tier_gets_the_strictest_minimum():
    db = res(RDS, "db", backupRetentionPeriod=max(guardrails.MIN_BACKUP_RETENTION_DAYS.values()) - 1)
    assert _policy_flags("rds-backups", db, "")
