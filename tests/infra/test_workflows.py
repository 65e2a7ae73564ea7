"""The GitHub workflows parse, have the expected jobs, and call commands that exist in this repo."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from mlplat.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
STACKS = ("dev", "staging", "prod")


def _load(name):
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _steps(doc):
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


def _runs(doc):
    return "\n".join(s.get("run", "") for s in _steps(doc))


def _makefile_targets():
    return set(re.findall(r"^([A-Za-z0-9_-]+):", (REPO / "Makefile").read_text(), re.M))


ALL = ["ci.yml", "preview.yml", "deploy.yml", "e2e.yml"]


@pytest.mark.parametrize("name", ALL)
def test_commands_called_exist(name):
    runs = _runs(_load(name))
    for target in re.findall(r"\bmake ([A-Za-z0-9_-]+)", runs):
        assert target in _makefile_targets(), f"{name}: `make {target}` has no Makefile target"
    known = {c for c, _m, _e in COMMANDS}
    for command in re.findall(r"mlplat ([a-z-]+)", runs):
        assert command in known, f"{name}: `mlplat {command}` is not a command"
    for script in re.findall(r"\b(scripts/[\w./-]+)", runs):
        assert (REPO / script).exists(), f"{name}: {script} does not exist"
    for env in re.findall(r"scripts/bootstrap\.sh([a-z ]*)", runs):
        assert set(env.split()) <= {"iac", "ml", "policy", "system"}


def test_ci_runs_lint_tests_policy_and_diff():
    ci = _load("ci.yml")
    assert set(ci["on"]) >= {"pull_request", "push"}
    assert {"lint", "test", "plans"} <= set(ci["jobs"])
    runs = _runs(ci)
    assert "make lint" in runs and "make synth-all" in runs
    assert {"make test-iac", "make test-ml", "make test-policy-pack"} <= set(re.findall(r"make [\w-]+", runs))
    assert "mlplat policy --plan" in runs and "mlplat diff --stack" in runs and "--base" in runs
    comment = next(s for s in _steps(ci) if "sticky-pull-request-comment" in s.get("uses", ""))
    assert comment["with"]["path"] == "build/plans/diff.md"


def test_preview_runs_pulumi_preview_with_the_pack_per_stack():
    preview = _load("preview.yml")
    assert preview["permissions"]["id-token"] == "write"  # AWS through OIDC, no stored keys
    job = preview["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == list(STACKS)
    pulumi = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"
    assert any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in job["steps"])


def test_deploy_dev_on_main_and_approved_staging_prod():
    deploy = _load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["on"]["workflow_dispatch"]["inputs"]["stack"]["options"] == ["staging", "prod"]
    up = deploy["jobs"]["up"]
    assert up["needs"] == "gate" and "inputs.stack" in up["environment"]
    pulumi = next(s for s in up["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "up" and pulumi["with"]["policyPacks"] == "policies"


def test_policy_pack_and_configs_referenced_exist():
    assert (REPO / "policies" / "PulumiPolicy.yaml").exists()
    for stack in STACKS:
        assert (REPO / "policies" / "config" / f"{stack}.json").exists()


# actionlint is not installable here (its PyPI wrapper downloads the binary at build time), so the
# structural rules it would apply first are checked directly.
@pytest.mark.parametrize("name", ALL)
def test_workflow_structure(name):
    doc = _load(name)
    assert doc["on"], f"{name}: no trigger"
    jobs = doc["jobs"]
    for job_name, job in jobs.items():
        assert "runs-on" in job, f"{name}: job {job_name} has no runs-on"
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{name}: job {job_name} needs unknown job {need}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{name}: step {step} needs exactly one of uses/run"
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]
    text = (WORKFLOWS / name).read_text()
    assert text.count("${{") == text.count("}}"), f"{name}: unbalanced expression"
    for script in re.findall(r"<<'EOF'\n(.*?)\n\s*EOF", text, re.S):
        compile(textwrap.dedent(script), name, "exec")  # inline Python parses


def test_e2e_is_manual_and_nightly_and_always_destroys():
    e2e = _load("e2e.yml")
    assert "workflow_dispatch" in e2e["on"]
    (cron,) = [s["cron"] for s in e2e["on"]["schedule"]]
    assert len(cron.split()) == 5
    assert e2e["permissions"]["id-token"] == "write"
    jobs = e2e["jobs"]
    assert jobs["up"]["needs"] == "guard" and set(jobs["destroy"]["needs"]) == {"guard", "up"}
    assert "always()" in jobs["destroy"]["if"]
    assert all(job["timeout-minutes"] <= 120 for job in jobs.values())
    guard = "\n".join(s.get("run", "") for s in jobs["guard"]["steps"])
    assert "aws budgets describe-budget" in guard and "mlplat preflight --stack dev" in guard
    assert "MAX_VCPUS" in guard
    up = next(s for s in jobs["up"]["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    down = next(s for s in jobs["destroy"]["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert up["with"]["command"] == "up" and down["with"]["command"] == "destroy" and down["with"]["remove"]
    assert up["with"]["stack-name"] == down["with"]["stack-name"] == "${{ env.STACK }}"
    smoke = "\n".join(s.get("run", "") for s in jobs["up"]["steps"])
    assert "scripts/e2e_smoke.py" in smoke and "scripts/e2e_ml.py requests" in smoke
