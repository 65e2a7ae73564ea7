"""Every rule: a compliant and a violating example; config handling as the Pulumi CLI does it."""

from __future__ import annotations

import json

import pytest

from contracts.guardrails import MIN_BACKUP_RETENTION_DAYS
from infra.offline.policy_eval import Plan, evaluate
from policies.config import CONFIG_DIR, PolicyConfigError, load_file, resolve, stack_config_path
from policies.examples import EXAMPLES, REDIS, REDIS_OK, res
from policies.rules import ALL_RULES, RULES_BY_NAME
from stacks.bom import load_bom


def _violations(rule_name, resources, environment="prod", config=None):
    resolved = resolve({rule_name: dict(config or {})}, ALL_RULES)
    plan = Plan(stack=environment, environment=environment, resources=resources)
    return [v for v in evaluate(plan, resolved, [RULES_BY_NAME[rule_name]])]


def test_pack_has_at_least_30_documented_rules():
    assert len(ALL_RULES) >= 30
    for rule in ALL_RULES:
        assert rule.description and rule.remediation and rule.severity and rule.area, rule.name


def test_every_rule_has_examples():
    assert set(EXAMPLES) == set(RULES_BY_NAME)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_passing_example_has_no_violation(name):
    ex = EXAMPLES[name]
    assert _violations(name, ex.passing, ex.environment, ex.config) == []


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_violating_example_is_reported(name):
    ex = EXAMPLES[name]
    found = _violations(name, ex.violating, ex.environment, ex.config)
    assert found, f"{name} did not flag its violating example"
    assert all(v.policy == name and v.message for v in found)
    if not RULES_BY_NAME[name].is_stack_rule:
        # Each violating resource of a resource rule is flagged on its own.
        assert {v.urn for v in found} == {r.urn for r in ex.violating}


def test_tier_scoped_rule_is_waived_outside_its_environments():
    bad = [res(REDIS, "cache", **{**REDIS_OK, "multiAzEnabled": False})]
    assert _violations("redis-multi-az", bad, "dev") == []
    assert _violations("redis-multi-az", bad, "prod")
    assert _violations("redis-multi-az", bad, "staging")
    assert _violations("redis-multi-az", bad, "staging", {"environments": ["prod"]}) == []


def test_stack_configs_make_rules_advisory_or_mandatory_per_environment():
    dev = resolve(load_file(stack_config_path("dev")), ALL_RULES)
    prod = resolve(load_file(stack_config_path("prod")), ALL_RULES)
    assert dev["eks-endpoint-restricted"].enforcement == "advisory"
    assert prod["eks-endpoint-restricted"].enforcement == "mandatory"
    assert prod["kms-deletion-window"].enforcement == "mandatory"  # `all: mandatory`, then per-policy config
    assert RULES_BY_NAME["kms-deletion-window"].enforcement == "advisory"


def test_config_defaults_are_filled_like_the_cli():
    resolved = resolve({"rds-backups": {"enforcementLevel": "advisory"}}, ALL_RULES)
    assert resolved["rds-backups"] == resolved["rds-backups"].__class__(
        "advisory", {"minimumRetentionDays": dict(MIN_BACKUP_RETENTION_DAYS)})
    assert resolved["sg-no-public-ingress"].config == {"allowedPublicPorts": [443]}


@pytest.mark.parametrize(("raw", "message"), [
    ({"no-such-policy": "mandatory"}, "unknown policies: no-such-policy"),
    ({"rds-backups": "blocking"}, "enforcement level 'blocking'"),
    ({"rds-backups": {"minimumRetentionDays": 7}}, "rds-backups.minimumRetentionDays: expected object"),
    ({"rds-backups": {"minimumRetentionDays": {"prod": "seven"}}},
     "rds-backups.minimumRetentionDays.prod: expected integer"),
    ({"rds-backups": {"retention": 3}}, "unknown config properties ['retention']"),
    ({"redis-multi-az": {"environments": ["qa"]}}, "'qa' is not one of"),
])
def test_bad_policy_config_is_named(raw, message):
    with pytest.raises(PolicyConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve(raw, ALL_RULES)


def test_committed_stack_configs_are_valid():
    for path in CONFIG_DIR.glob("*.json"):
        resolve(json.loads(path.read_text()), ALL_RULES)


def test_supported_versions_default_matches_bom():
    schema = RULES_BY_NAME["eks-supported-version"].config["supportedVersions"]
    assert schema["default"] == list(load_bom().kubernetes.supported)
