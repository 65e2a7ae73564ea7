"""The first `pulumi preview` of a stack, offline: values AWS assigns on create are unknown, the plan
writes them as `pulumi preview --json` does, and the policy pack either decides from what is known or
says that it decides at `pulumi up` - it never crashes, passes or fails on a placeholder."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.runtime import rpc

from infra.offline.policy_eval import evaluate, parse_plan
from infra.offline.synth import UNKNOWN, synthesize, write_plan
from mlplat.cli import main
from policies.config import load_file, resolve, stack_config_path
from policies.examples import EXAMPLES
from policies.rules import ALL_RULES, RULES_BY_NAME
from policies.rules.base import UNKNOWN_VALUES, is_unknown

STACKS = ("dev", "staging", "prod")
BOOLEAN_UNKNOWN = "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"
NUMBER_UNKNOWN = "3eeb2bf0-c639-47a8-9e75-3b44932eb421"
# Encryption, public exposure and IMDSv2: decided from what the first preview knows.
SECURITY_AT_PREVIEW = (
    "eks-secrets-encryption", "nodes-encrypted-volumes", "s3-sse-kms", "s3-tls-only", "redis-encryption-at-rest",
    "redis-encryption-in-transit", "msk-tls-only", "msk-encryption-at-rest", "rds-storage-encrypted",
    "eks-endpoint-restricted", "sg-no-public-ingress", "s3-public-access-block-all", "s3-bucket-public-access-block",
    "s3-no-public-acl", "rds-not-public", "nodes-no-public-ip", "subnet-no-auto-public-ip",
    "nodegroup-no-remote-access", "nodes-imdsv2",
)


@pytest.fixture(autouse=True)
def _event_loop() -> None:
    # Pulumi's mock runs close the loop they used; the next synthesis needs one.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(scope="module")
def preview_plans(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The first-preview plan of each stack, as written to disk."""
    out = {}
    for stack in STACKS:
        path = tmp_path_factory.mktemp("preview") / f"{stack}.json"
        write_plan(synthesize(stack, first_preview=True), path)
        out[stack] = json.loads(path.read_text())
    return out


def _states(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["urn"]: s["newState"] for s in plan["steps"]}


def _unknown_paths(value: Any, path: str = "") -> Iterator[str]:
    if is_unknown(value):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _unknown_paths(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _unknown_paths(v, f"{path}[{i}]")


def _agrees(preview: Any, update: Any, path: str, problems: list[str]) -> None:
    """`preview` is `update` with some values (or whole subtrees) unknown, nothing else changed."""
    if is_unknown(preview):
        return
    if isinstance(update, dict) and isinstance(preview, dict):
        if set(preview) != set(update):
            problems.append(f"{path}: keys {sorted(set(preview) ^ set(update))} differ")
        for k in set(preview) & set(update):
            _agrees(preview[k], update[k], f"{path}.{k}", problems)
    elif isinstance(update, list) and isinstance(preview, list) and len(update) == len(preview):
        for i, (p, u) in enumerate(zip(preview, update, strict=True)):
            _agrees(p, u, f"{path}[{i}]", problems)
    elif preview != update:
        problems.append(f"{path}: {preview!r} in the preview, {update!r} after up")


def test_unknown_is_the_engines_placeholder():
    assert UNKNOWN == rpc.UNKNOWN == "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    assert UNKNOWN in UNKNOWN_VALUES


def test_preview_plan_is_the_update_plan_with_created_values_unknown(preview_plans, synth, tmp_path):
    update_path = tmp_path / "prod.json"
    write_plan(synth("prod"), update_path)
    update, preview = json.loads(update_path.read_text()), preview_plans["prod"]
    assert UNKNOWN not in update_path.read_text()
    assert "first preview" in preview["generator"] and "first preview" not in update["generator"]
    before, after = _states(preview), _states(update)
    assert set(before) == set(after)
    problems: list[str] = []
    for urn, state in before.items():
        _agrees(state["inputs"], after[urn]["inputs"], urn.rsplit("::", 1)[1], problems)
        assert state["dependencies"] == after[urn]["dependencies"], urn
    _agrees(preview["outputs"], update["outputs"], "outputs", problems)
    assert problems == []


def test_unknowns_are_where_a_first_preview_has_them(preview_plans):
    plan = preview_plans["prod"]
    outputs = plan["outputs"]
    # Ids, ARNs and endpoints of resources not created yet ...
    for key in ("vpcId", "clusterEndpoint", "oidcProviderArn", "redisEndpoint", "databaseEndpoint",
                "kafkaClusterArn", "modelServerRepositoryUrl"):
        assert outputs[key] == UNKNOWN, key
    assert all(v == UNKNOWN for v in outputs["dataKeyArns"].values())
    # ... but not the names the program (or the provider's auto-naming) chooses, nor config.
    assert outputs["clusterName"] == "mlplatform-prod-eks"
    assert all(not is_unknown(v) for v in outputs["buckets"].values())
    assert outputs["databaseIdentifier"] and not is_unknown(outputs["databaseIdentifier"])
    states = list(_states(plan).values())

    def paths(type_: str) -> set[str]:
        return {p for s in states if s["type"] == type_ for p in _unknown_paths(s["inputs"])}

    assert paths("aws:eks/cluster:Cluster") >= {"encryptionConfig.provider.keyArn", "roleArn"}
    assert "rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId" in paths(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert "assumeRolePolicy" in paths("aws:iam/role:Role")  # IRSA trust names the OIDC issuer
    assert "metadata.annotations.eks.amazonaws.com/role-arn" in paths("kubernetes:core/v1:ServiceAccount")
    # Known at preview: config-only resources, and policies built from names (bucket policies).
    assert paths("aws:ec2/launchTemplate:LaunchTemplate") == set()
    assert paths("aws:s3/bucketPolicy:BucketPolicy") == set()
    assert paths("aws:kms/key:Key") == set()


@pytest.mark.parametrize("stack", STACKS)
def test_policy_pack_on_a_first_preview(preview_plans, stack):
    plan = parse_plan(preview_plans[stack], stack)
    found = evaluate(plan, resolve(load_file(stack_config_path(stack)), ALL_RULES))
    assert [v for v in found if v.enforcement == "mandatory"] == []
    undecided = [v for v in found if v.undecided]
    assert {v.policy for v in undecided} == {r.name for r in ALL_RULES if r.decided == "update"}
    for v in undecided:
        assert v.enforcement == "advisory" and v.urn, v
        assert v.message.startswith(f"can't run policy '{v.policy}' during preview: value at .")
        assert "can't be known during preview" in v.message


def test_security_properties_are_decided_at_preview():
    assert all(RULES_BY_NAME[name].decided == "preview" for name in SECURITY_AT_PREVIEW)
    for rule in ALL_RULES:
        if rule.decided == "update":
            assert rule.preview_guard, rule.name


@pytest.mark.parametrize(("type_", "edit", "policy"), [
    ("aws:ec2/launchTemplate:LaunchTemplate", lambda i: i["metadataOptions"].update(httpTokens="optional"),
     "nodes-imdsv2"),
    ("aws:rds/instance:Instance", lambda i: i.update(publiclyAccessible=True), "rds-not-public"),
    ("aws:eks/cluster:Cluster", lambda i: i.update(encryptionConfig=None), "eks-secrets-encryption"),
    ("aws:s3/bucketPolicy:BucketPolicy", lambda i: i.update(policy=json.dumps({"Statement": []})), "s3-tls-only"),
    ("aws:msk/cluster:Cluster", lambda i: i["encryptionInfo"].pop("encryptionAtRestKmsKeyArn"),
     "msk-encryption-at-rest"),
])
def test_security_violations_fail_the_first_preview(preview_plans, type_, edit, policy):
    doc = copy.deepcopy(preview_plans["prod"])
    state = next(s for s in _states(doc).values() if s["type"] == type_)
    edit(state["inputs"])
    found = evaluate(parse_plan(doc, "prod"), resolve(load_file(stack_config_path("prod")), ALL_RULES))
    stack_rule = RULES_BY_NAME[policy].is_stack_rule  # reported on the bucket, not on its policy
    assert any(v.policy == policy and (stack_rule or v.urn == state["urn"]) and v.enforcement == "mandatory"
               for v in found)


def test_an_over_broad_grant_fails_the_first_preview(monkeypatch):
    """Inline policies naming a KMS key are unknown at preview, so the pack decides them at `up`; the
    program checks the statements' shapes when it declares them, before any ARN exists."""
    from infra.aws import identities

    monkeypatch.setattr(identities, "S3_READ", ["s3:*"])
    with pytest.raises(ValueError, match=r"grants too much: .*s3:\*"):
        synthesize("dev", first_preview=True)


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def _with_unknown(props: dict[str, Any], path: tuple) -> dict[str, Any]:
    out = copy.deepcopy(props)
    target: Any = out
    for part in path[:-1]:
        target = target[part]
    old = target[path[-1]]
    target[path[-1]] = (BOOLEAN_UNKNOWN if isinstance(old, bool) else NUMBER_UNKNOWN if isinstance(old, int | float)
                        else UNKNOWN)
    return out


def _unknown_variants() -> Iterator[tuple[str, str, int, tuple]]:
    for name, ex in EXAMPLES.items():
        for kind in ("passing", "violating"):
            for i, r in enumerate(getattr(ex, kind)):
                for path in _leaves(dict(r.props)):
                    if path and _at(dict(r.props), path) is not None:  # an unset value does not become unknown
                        yield name, kind, i, path


VARIANTS = list(_unknown_variants())


def test_no_rule_crashes_on_an_unknown_value():
    """Every value of every example, one at a time, made unknown: each rule still returns - a verdict or
    `undecided` - and never judges a resource it could not read."""
    assert len(VARIANTS) > 300
    for name, kind, i, path in VARIANTS:
        ex = EXAMPLES[name]
        resources = list(getattr(ex, kind))
        r = resources[i]
        resources[i] = type(r)(**{**r.__dict__, "props": _with_unknown(dict(r.props), path)})
        plan = parse_plan({"stack": ex.environment, "steps": [
            {"newState": {"urn": x.urn, "type": x.type, "inputs": dict(x.props), "protect": x.protect,
                          "dependencies": x.dependencies}} for x in resources]}, ex.environment)
        resolved = resolve({name: dict(ex.config)}, ALL_RULES)
        found = evaluate(plan, resolved, [RULES_BY_NAME[name]])  # must not raise
        where = (name, kind, r.name, path)
        if kind == "passing":  # an unknown never makes a compliant resource fail
            assert all(v.undecided for v in found), (where, found)
        else:  # nor a violating one pass: it still fails, or the rule says it cannot decide yet
            assert found, where
        for v in found:
            if v.undecided:
                assert "can't be known during preview" in v.message, v


def test_synth_and_policy_cli_with_preview(tmp_path, capsys):
    out = tmp_path / "dev.json"
    assert main(["synth", "--stack", "dev", "--preview", "--out", str(out)]) == 0
    assert "first-preview plan" in capsys.readouterr().out
    assert UNKNOWN in out.read_text()
    assert main(["policy", "--plan", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[undecided at preview] irsa-trust-single-service-account" in printed
    assert " 0 mandatory" in printed and "undecided until `pulumi up`" in printed


def test_preview_flag_misuse_is_a_usage_error(tmp_path, capsys):
    assert main(["policy", "--plan", str(tmp_path / "x.json"), "--preview"]) == 2
    assert "--preview needs --stack" in capsys.readouterr().err
    assert main(["synth", "--update-golden", "--preview"]) == 2
    assert "--preview does not apply" in capsys.readouterr().err
