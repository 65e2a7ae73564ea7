"""`mlplat synth` writes a preview-shaped plan that holds the foundation's resources."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # every test reads `mlplat synth` run in a subprocess


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    out = tmp_path_factory.mktemp("plans")
    result = {}
    for env in ("prod", "dev"):
        cmd = [sys.executable, "-m", "mlplat", "synth", "--stack", env, "--out", str(out / f"{env}.json")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result[env] = (json.loads((out / f"{env}.json").read_text()), None)
    return result


def _types(plan, type_):
    return [s["newState"] for s in plan["steps"] if s["newState"]["type"] == type_]


def test_plan_has_preview_shape(plans):
    plan, _ = plans["prod"]
    assert plan["changeSummary"]["create"] == len(plan["steps"])
    for step in plan["steps"]:
        assert step["op"] == "create"
        assert step["urn"].startswith("urn:pulumi:prod::mlplatform::")
        state = step["newState"]
        assert {"type", "inputs", "parent", "protect", "dependencies", "retainOnDelete"} <= state.keys()
    assert plan["outputs"]["platformVersion"]


def test_prod_plan_holds_the_foundation(plans):
    plan, _ = plans["prod"]
    assert len(_types(plan, "aws:ec2/vpc:Vpc")) == 1
    subnets = _types(plan, "aws:ec2/subnet:Subnet")
    for tier in ("public", "private"):
        zones = {s["inputs"]["availabilityZone"] for s in subnets if s["inputs"]["tags"]["Tier"] == tier}
        assert len(zones) == 3
    assert len(_types(plan, "aws:ec2/natGateway:NatGateway")) == 3
    (cluster,) = _types(plan, "aws:eks/cluster:Cluster")
    assert cluster["inputs"]["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert len(_types(plan, "aws:eks/nodeGroup:NodeGroup")) >= 3
    templates = _types(plan, "aws:ec2/launchTemplate:LaunchTemplate")
    assert templates and all(t["inputs"]["metadataOptions"]["httpTokens"] == "required" for t in templates)


def test_dev_plan_has_one_nat_and_secrets_are_masked(plans):
    plan, _ = plans["dev"]
    assert len(_types(plan, "aws:ec2/natGateway:NatGateway")) == 1
    assert plan["outputs"]["kubeconfig"] == "[secret]"
    assert "BEGIN CERTIFICATE" not in json.dumps(plan["outputs"])


def test_synth_rejects_unknown_stack():
    proc = subprocess.run([sys.executable, "-m", "mlplat", "synth", "--stack", "qa", "--out", "x.json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'qa'" in proc.stderr
