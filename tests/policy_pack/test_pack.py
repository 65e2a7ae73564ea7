"""The CrossGuard pack as the Pulumi CLI runs it (.venv-policy): `policies/__main__.py` starts the
analyzer server; we talk to it over gRPC like the engine does and compare its verdicts with the
in-process evaluator on the committed golden plans, and on first-preview plans (values unknown until
`up`, made by `mlplat synth --preview` in the IaC environment, which CI builds before this suite)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from contracts.guardrails import MIN_BACKUP_RETENTION_DAYS
from infra.offline.golden import golden_path
from infra.offline.policy_eval import evaluate, parse_plan
from policies.config import load_file, resolve, stack_config_path
from policies.examples import BRANCHES, EXAMPLES
from policies.pack import build_policies
from policies.rules import ALL_RULES, PACK_NAME

REPO = Path(__file__).resolve().parents[2]
IAC_PYTHON = REPO / ".venv" / "bin" / "python"
STACKS = ("dev", "staging", "prod")
LEVELS = {"advisory": proto.ADVISORY, "mandatory": proto.MANDATORY, "disabled": proto.DISABLED}


def _struct(value):
    s = struct_pb2.Struct()
    s.update(json.loads(json.dumps(value)))
    return s


@contextlib.contextmanager
def _serve(stack: str):
    """Run the pack's entry point for `stack` and connect to the analyzer port it prints (as the CLI does)."""
    env = {**os.environ, "PULUMI_STACK": stack, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-u", str(REPO / "policies" / "__main__.py")], cwd=REPO / "policies",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def analyzer():
    with _serve("prod") as stub:
        yield stub


def test_build_policies_wraps_every_rule():
    policies = build_policies()
    assert [p.name for p in policies] == [r.name for r in ALL_RULES]
    for policy, rule in zip(policies, ALL_RULES, strict=True):
        assert isinstance(policy, StackValidationPolicy if rule.is_stack_rule else ResourceValidationPolicy)
        assert policy.severity.value == rule.severity and policy.remediation_steps == rule.remediation


def test_pack_lists_all_rules(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert len(info.policies) == len(ALL_RULES) >= 30
    by_name = {p.name: p for p in info.policies}
    assert by_name["rds-backups"].configSchema.properties["minimumRetentionDays"]["default"] == dict(
        MIN_BACKUP_RETENTION_DAYS)
    assert all(p.remediation_steps and p.severity for p in info.policies)


def _configure(analyzer, stack):
    resolved = resolve(load_file(stack_config_path(stack)), ALL_RULES)
    request = proto.ConfigureAnalyzerRequest()
    for name, policy in resolved.items():
        request.policyConfig[name].CopyFrom(
            proto.PolicyConfig(enforcementLevel=LEVELS[policy.enforcement], properties=_struct(policy.config)))
    analyzer.Configure(request)


def _analyze(analyzer, plan_doc):
    states = [s["newState"] for s in plan_doc["steps"]]
    providers = {s["urn"]: s for s in states if s["type"].startswith("pulumi:providers:")}
    found = set()
    stack_resources = []
    for s in states:
        opts = proto.AnalyzerResourceOptions(protect=bool(s.get("protect")), parent=s.get("parent") or "")
        provider = providers.get(s.get("provider") or "")
        prov = (proto.AnalyzerProviderResource(type=provider["type"], urn=provider["urn"],
                                               name=provider["urn"].rsplit("::", 1)[1],
                                               properties=_struct(provider.get("inputs") or {}))
                if provider else None)
        name = s["urn"].rsplit("::", 1)[1]
        props = _struct(s.get("inputs") or {})
        response = analyzer.Analyze(proto.AnalyzeRequest(type=s["type"], urn=s["urn"], name=name, properties=props,
                                                         options=opts, provider=prov))
        found |= {(d.policyName, s["urn"], d.enforcementLevel) for d in response.diagnostics}
        stack_resources.append(proto.AnalyzerResource(
            type=s["type"], urn=s["urn"], name=name, properties=props, options=opts, provider=prov,
            parent=s.get("parent") or "", dependencies=s.get("dependencies") or []))
    response = analyzer.AnalyzeStack(proto.AnalyzeStackRequest(resources=stack_resources))
    found |= {(d.policyName, d.urn, d.enforcementLevel) for d in response.diagnostics}
    return found


def test_analyzer_agrees_with_in_process_evaluation(analyzer):
    plan_doc = json.loads(golden_path("prod").read_text())
    # Make it interesting: one resource and one stack violation on top of whatever the plan has.
    for s in plan_doc["steps"]:
        if s["newState"]["type"] == "aws:elasticache/replicationGroup:ReplicationGroup":
            s["newState"]["inputs"]["transitEncryptionEnabled"] = False
    plan_doc["steps"] = [s for s in plan_doc["steps"]
                         if s["newState"]["type"] != "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]
    _configure(analyzer, "prod")
    via_pack = _analyze(analyzer, plan_doc)
    resolved = resolve(load_file(stack_config_path("prod")), ALL_RULES)
    in_process = {(v.policy, v.urn, LEVELS[v.enforcement]) for v in evaluate(parse_plan(plan_doc), resolved)}
    assert via_pack == in_process
    assert {p for p, _u, _l in via_pack} >= {"redis-encryption-in-transit", "s3-bucket-public-access-block"}


@pytest.fixture(scope="module")
def preview_plans(tmp_path_factory):
    """First-preview plans of every stack, synthesized in parallel in the IaC environment."""
    assert IAC_PYTHON.exists(), f"{IAC_PYTHON} missing: `make setup` builds the IaC environment"
    out = tmp_path_factory.mktemp("preview")
    procs = {stack: subprocess.Popen([str(IAC_PYTHON), "-m", "mlplat", "synth", "--stack", stack, "--preview",
                                      "--out", str(out / f"{stack}.json")], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
             for stack in STACKS}
    for stack, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"mlplat synth --preview --stack {stack}:\n{output[-3000:]}"
    return {stack: json.loads((out / f"{stack}.json").read_text()) for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_analyzer_on_a_first_preview_agrees_with_in_process(preview_plans, stack):
    """Rules needing a value unknown until `up` are reported by the running pack the way CrossGuard
    reports any policy that reads an unknown (advisory, "can't run policy ... during preview"), for the
    same resources as in process; nothing else is reported and no call fails."""
    plan_doc = preview_plans[stack]
    assert "04da6b54-80e4-46f7-96ec-b56ff0331ba9" in json.dumps(plan_doc)
    with _serve(stack) as analyzer:
        _check_preview(analyzer, plan_doc, stack)


def _check_preview(analyzer, plan_doc, stack):
    _configure(analyzer, stack)
    via_pack = _analyze(analyzer, plan_doc)
    resolved = resolve(load_file(stack_config_path(stack)), ALL_RULES)
    found = evaluate(parse_plan(plan_doc), resolved)
    stack_rules = {r.name for r in ALL_RULES if r.is_stack_rule}
    # CrossGuard reports an undecided stack policy once, without a resource.
    in_process = {(v.policy, "" if v.undecided and v.policy in stack_rules else v.urn,
                   LEVELS[v.enforcement]) for v in found}
    assert via_pack == in_process
    undecided = {p for p, _u, level in via_pack if level == proto.ADVISORY} - {
        v.policy for v in found if not v.undecided}
    assert undecided == {r.name for r in ALL_RULES if r.decided == "update"}
    messages = _messages(analyzer, plan_doc)
    assert any("can't run policy 'irsa-trust-single-service-account'" in m and "during preview" in m
               for m in messages)


def _messages(analyzer, plan_doc):
    out = []
    for step in plan_doc["steps"]:
        s = step["newState"]
        response = analyzer.Analyze(proto.AnalyzeRequest(type=s["type"], urn=s["urn"], name=s["urn"].rsplit("::")[-1],
                                                         properties=_struct(s.get("inputs") or {})))
        out += [d.message for d in response.diagnostics]
    return out


def _configure_raw(analyzer, raw):
    request = proto.ConfigureAnalyzerRequest()
    for name, policy in resolve(raw, ALL_RULES).items():
        request.policyConfig[name].CopyFrom(
            proto.PolicyConfig(enforcementLevel=LEVELS[policy.enforcement], properties=_struct(policy.config)))
    analyzer.Configure(request)


def _doc(resources):
    return {"steps": [{"newState": {"urn": r.urn, "type": r.type, "inputs": dict(r.props), "protect": r.protect,
                                    "dependencies": r.dependencies}} for r in resources]}


def test_examples_through_the_analyzer(analyzer):
    """Each rule's violating example and every other violating branch is reported by the running pack
    too, by that rule alone; each compliant example passes it."""
    cases = [(name, ex.violating, ex.passing, ex.config) for name, ex in EXAMPLES.items()]
    cases += [(b.rule, b.resources, [], {}) for b in BRANCHES if b.environment == "prod"]
    for name, violating, passing, config in cases:
        _configure_raw(analyzer, {name: dict(config)} if config else {})
        assert {p for p, _u, _l in _analyze(analyzer, _doc(violating))} == {name}, name
        assert _analyze(analyzer, _doc(passing)) == set(), name
