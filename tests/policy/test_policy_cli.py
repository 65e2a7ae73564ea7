"""`mlplat policy` and `mlplat diff` on plan files: the committed golden plans, edited the way a bad
change would edit them, and broken or foreign files."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from infra.offline.golden import golden_path
from infra.offline.policy_eval import PlanFormatError, load_plan, parse_plan
from mlplat.cli import main

STACKS = ("dev", "staging", "prod")


def _golden(stack="prod"):
    return json.loads(golden_path(stack).read_text())


def _inputs(plan, type_):
    return [s["newState"] for s in plan["steps"] if s["newState"]["type"] == type_]


def _run(tmp_path, plan, *extra):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return main(["policy", "--plan", str(path), *extra])


@pytest.mark.parametrize("stack", STACKS)
def test_stacks_have_no_mandatory_violation(stack, capsys):
    assert main(["policy", "--plan", str(golden_path(stack))]) == 0, capsys.readouterr().out
    assert " 0 mandatory" in capsys.readouterr().out


def test_disabling_redis_transit_encryption_fails(tmp_path, capsys):
    plan = _golden()
    for state in _inputs(plan, "aws:elasticache/replicationGroup:ReplicationGroup"):
        state["inputs"]["transitEncryptionEnabled"] = False
    assert _run(tmp_path, plan) == 1
    assert "[mandatory] redis-encryption-in-transit" in capsys.readouterr().out


def test_opening_ssh_to_the_internet_fails(tmp_path, capsys):
    plan = _golden()
    sg = _inputs(plan, "aws:ec2/securityGroup:SecurityGroup")[0]
    sg["inputs"].setdefault("ingress", []).append(
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]})
    assert _run(tmp_path, plan) == 1
    out = capsys.readouterr().out
    assert "[mandatory] sg-no-public-ingress" in out and "0.0.0.0/0 on port 22" in out


def test_removing_a_public_access_block_fails(tmp_path, capsys):
    plan = _golden()
    pab = next(s for s in plan["steps"]
               if s["newState"]["type"] == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    plan["steps"].remove(pab)
    assert _run(tmp_path, plan) == 1
    assert "[mandatory] s3-bucket-public-access-block" in capsys.readouterr().out


def test_violations_json_and_explicit_config(tmp_path, capsys):
    out = tmp_path / "v.json"
    # The prod plan under the dev policy config: the prod-only rules still apply (tier from the plan).
    code = main(["policy", "--plan", str(golden_path("dev")), "--policy-config",
                 str(Path("policies/config/prod.json")), "--json", str(out)])
    found = json.loads(out.read_text())
    assert code == 1  # dev's open endpoint is mandatory under the prod config
    assert {"policy", "urn", "message", "severity", "enforcement", "resource"} <= set(found[0])
    assert any(v["policy"] == "eks-endpoint-restricted" and v["enforcement"] == "mandatory" for v in found)


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object with `steps`"),
    ('{"resources": []}', "no `steps` list"),
    ('{"steps": [{"op": "create"}]}', "steps[0] (?) has no newState object"),
    ('{"steps": [{"newState": {"urn": "x", "type": "t"}}]}', "is not a Pulumi URN"),
    ('{"steps": [{"newState": {"urn": "urn:pulumi:a::b::t::n", "type": "t", "inputs": []}}]}',
     "inputs is not an object"),
])
def test_broken_or_foreign_plan_gets_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(PlanFormatError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
        load_plan(path)
    assert main(["policy", "--plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_plan_file(tmp_path, capsys):
    assert main(["policy", "--plan", str(tmp_path / "nope.json")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_preview_delete_steps_are_ignored():
    plan = _golden("dev")
    plan["steps"].append({"op": "delete", "urn": "urn:pulumi:dev::p::t::gone", "oldState": {}})
    assert len(parse_plan(plan).resources) == len(_golden("dev")["steps"])


def test_diff_of_plan_files(tmp_path, capsys):
    base = _golden()
    head = copy.deepcopy(base)
    redis = _inputs(head, "aws:elasticache/replicationGroup:ReplicationGroup")[0]
    redis["inputs"]["transitEncryptionEnabled"] = False
    redis["inputs"]["authToken"] = "[secret]"
    removed = head["steps"].pop(0)["urn"]
    added = copy.deepcopy(head["steps"][0])
    added["newState"]["urn"] = added["urn"] = added["newState"]["urn"] + "-copy"
    head["steps"].append(added)
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "head.json").write_text(json.dumps(head))
    md, js = tmp_path / "d.md", tmp_path / "d.json"
    assert main(["diff", "--stack", "prod", "--base-plan", str(tmp_path / "base.json"), "--head-plan",
                 str(tmp_path / "head.json"), "--markdown", str(md), "--json", str(js)]) == 0
    text = md.read_text()
    assert "Offline plan" in text and "cannot predict replacements" in text
    assert "`transitEncryptionEnabled`: True → False" in text
    assert removed.rsplit("::", 1)[1] in text and "Deleted (1)" in text and "Created (1)" in text
    preview = json.loads(js.read_text())
    assert preview["changeSummary"] == {"create": 1, "update": 1, "delete": 1, "same": len(base["steps"]) - 2}
    update = next(s for s in preview["steps"] if s["op"] == "update")
    assert update["diffReasons"] == ["transitEncryptionEnabled"]
    assert "detailedDiff" in update


def test_diff_masks_secret_values():
    from infra.offline.plan_diff import mask

    assert mask("inputs.password", "hunter2") == "[secret]"
    assert mask("authToken", "abc") == "[secret]"
    assert mask("metadataOptions.httpTokens", "required") == "required"


@pytest.mark.integration
def test_diff_against_a_bad_revision_is_a_clear_error(capsys):
    assert main(["diff", "--stack", "dev", "--base", "no-such-ref-xyz"]) == 2
    assert "git revision 'no-such-ref-xyz' not found" in capsys.readouterr().err


@pytest.mark.integration
def test_diff_against_head_in_a_temporary_worktree(tmp_path):
    """End to end: synthesizes HEAD in a git worktree and the working tree, in parallel."""
    if subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    md = tmp_path / "d.md"
    before = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout.count("\n")
    assert main(["diff", "--stack", "dev", "--base", "HEAD", "--markdown", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("### Offline plan diff: `dev` (HEAD → working tree)")
    after = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout.count("\n")
    assert after == before  # the temporary worktree is removed again
