"""The cluster's load-test Job (infra/workloads/loadtest_job.py, `mlplat loadtest-job`): admitted at Pod Security
`restricted` by the conformance admission evaluator, read-only root, egress only to DNS and Seldon's envoy,
which admits the namespace; the Job runs the same `mlplat loadtest` scenario with the stack's service levels."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import yaml

from infra.cli import loadtest_job as cli
from infra.conformance import admission
from infra.conformance.model import KubeObject
from infra.conformance.selectors import EXTERNAL
from infra.workloads import loadtest_job
from infra.workloads.seldon import CALLER_NAMESPACES
from stacks.config import load_stack_file, stack_file
from stacks.schema import ServiceLevelsConfig

MIX = json.dumps({"format": "mlplat-loadtest-requests/1", "models": {"fraud": [{"inputs": []}]}})
LEVELS = ServiceLevelsConfig(latency_p99_ms=12.5, max_error_ratio=0.002)


def _manifests(**kw: object) -> list[dict]:
    args = {"image": "123.dkr.ecr.eu-west-1.amazonaws.com/model-server:1.2.3", "levels": LEVELS, "mix_json": MIX,
            "users": 8, "duration": "2m", "name": "loadtest-1", **kw}
    return loadtest_job.manifests(**args)  # type: ignore[arg-type]


def _admit(manifests: list[dict]) -> tuple[list, list[str]]:
    objects = [KubeObject(m, "mlplat loadtest-job") for m in manifests]
    return admission.check(objects, [], [], "1.34")


def test_the_job_is_admitted_at_restricted_in_its_own_namespace():
    problems, notes = _admit(_manifests())
    assert problems == []
    assert any("namespace loadtest enforces restricted:latest over 1 pod template" in n for n in notes), notes


def test_the_evaluator_refuses_the_job_without_its_security_context():
    """The check has teeth: the same Job with its container running as root (no runAsNonRoot) is refused."""
    docs = _manifests()
    job = copy.deepcopy(docs[-1])
    job["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop("runAsNonRoot")
    problems, _ = _admit([*docs[:-1], job])
    assert problems and "runAsNonRoot" in " ".join(p.message for p in problems)


def test_read_only_root_no_token_and_the_loadtest_command_with_the_stack_levels():
    job = _manifests(models=["fraud", "fraud-explainer"])[-1]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {m["mountPath"] for m in container["volumeMounts"]} == {loadtest_job.REQUESTS_DIR, "/tmp"}
    command = container["command"]
    assert command[:4] == ["python", "-m", "mlplat", "loadtest"] and "--mesh" in command
    flags = dict(itertools.pairwise(command[4:]))  # each flag -> the word after it
    assert flags["--target"] == "http://seldon-mesh.seldon.svc.cluster.local"
    assert (flags["--p99-ms"], flags["--max-error-ratio"]) == ("12.5", "0.002")
    assert (flags["--users"], flags["--duration"]) == ("8", "2m")
    assert command.count("--model") == 2
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 120 + 600


def test_egress_only_to_dns_and_the_mesh_which_admits_the_namespace():
    policies = [m for m in _manifests() if m["kind"] == "NetworkPolicy"]
    by_name = {p["metadata"]["name"]: p["spec"] for p in policies}
    assert by_name["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    egress = [rule for spec in by_name.values() for rule in spec.get("egress", [])]
    assert len(egress) == 2
    mesh = by_name["allow-seldon-mesh"]["egress"][0]
    assert mesh["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert mesh["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "seldon"}},
                           "podSelector": {"matchLabels": {"app.kubernetes.io/name": "seldon-envoy"}}}]
    assert {p["port"] for p in by_name["allow-dns"]["egress"][0]["ports"]} == {53}
    assert not any("ingress" in spec for spec in by_name.values())
    assert "loadtest" in CALLER_NAMESPACES  # the seldon namespace's ingress policy admits it on 9000/9002


def test_the_seldon_ingress_policy_of_the_plan_admits_the_loadtest_namespace(synth):
    policies = [r.inputs for r in synth("dev").of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                if r.inputs["metadata"]["namespace"] == "seldon" and r.inputs["metadata"]["name"] == "allow-ingress"]
    assert len(policies) == 1
    peers = [p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
             for rule in policies[0]["spec"]["ingress"] for p in rule.get("from", [])]
    assert "loadtest" in peers


@pytest.mark.parametrize(("kw", "message"), [
    ({"mix_json": json.dumps({"models": {}})}, "has no models"),
    ({"mix_json": json.dumps({"models": {"fraud": ["x" * 1_100_000]}})}, "a ConfigMap holds at most"),
    ({"users": 0}, "users must be at least 1"),
    ({"duration": "soon"}, "duration 'soon'"),
])
def test_bad_input_is_refused_with_a_message(kw, message):
    with pytest.raises(ValueError, match=message):
        _manifests(**kw)


def test_the_cli_renders_yaml_with_the_stack_service_levels(tmp_path, capsys):
    mix = tmp_path / "requests.json"
    mix.write_text(MIX)
    parser = __import__("argparse").ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["loadtest-job", "--stack", "prod", "--image", "img:1", "--requests", str(mix)])
    assert args.func(args) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["Namespace", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy",
                                         "ConfigMap", "Job"]
    levels = load_stack_file(stack_file("prod")).service_levels
    command = docs[-1]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--p99-ms") + 1] == f"{levels.latency_p99_ms:g}"
    args = parser.parse_args(["loadtest-job", "--image", "img:1", "--requests", str(tmp_path / "missing.json")])
    assert args.func(args) == 2 and "missing.json" in capsys.readouterr().err


def test_the_conformance_run_knows_the_namespace_as_the_job_renders_it():
    """The stack's seldon ingress policy names `loadtest`; the wiring check knows it from the external objects,
    which must hold exactly the Namespace `mlplat loadtest-job` applies (its Pod Security labels included)."""
    external = yaml.safe_load(EXTERNAL.read_text())["objects"]
    declared = [o["manifest"] for o in external if o["manifest"]["kind"] == "Namespace"
                and o["manifest"]["metadata"]["name"] == loadtest_job.NAMESPACE]
    assert declared == [loadtest_job.namespace()]
