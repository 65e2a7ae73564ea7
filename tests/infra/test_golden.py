"""Golden offline plans: a changed plan fails here until the golden file is refreshed and reviewed."""

from __future__ import annotations

import json

import pytest

from infra.offline.golden import REFRESH_COMMAND, STACKS, golden_path, render
from infra.offline.plan_diff import diff_plans
from infra.offline.policy_eval import parse_plan


def golden_mismatch(stack: str, golden: str, current: str) -> str | None:
    """None when the synthesized plan is the golden one, else what changed and how to refresh it."""
    if current == golden:
        return None
    d = diff_plans(json.loads(golden), json.loads(current), stack, "golden", "synthesized")
    changed = [f"{c.op} {c.type} {c.name}" + (f" ({', '.join(c.paths[:5])})" if c.paths else "")
               for c in d.changes[:15]]
    return (f"the offline plan of {stack} changed ({d.count('create')} created, {d.count('update')} updated, "
            f"{d.count('delete')} deleted):\n  " + "\n  ".join(changed or ["(ordering or metadata only)"])
            + f"\nIf intended, refresh and commit it: `{REFRESH_COMMAND}` (review the diff in the pull request).")


@pytest.mark.parametrize("stack", STACKS)
def test_golden_plan_matches_synthesis(synth, stack):
    path = golden_path(stack)
    assert path.exists(), f"{path} is missing; create it with `{REFRESH_COMMAND}`"
    problem = golden_mismatch(stack, path.read_text(), render(synth(stack)))
    if problem:
        pytest.fail(problem)


@pytest.mark.parametrize("stack", STACKS)
def test_golden_plan_is_a_valid_policy_input(stack):
    plan = parse_plan(json.loads(golden_path(stack).read_text()), stack)
    assert plan.stack == stack
    assert plan.environment == stack
    assert len(plan.resources) > 50


def test_a_changed_plan_fails_naming_the_change_and_the_refresh_command():
    golden = golden_path("dev").read_text()
    assert golden_mismatch("dev", golden, golden) is None
    plan = json.loads(golden)
    redis = next(s for s in plan["steps"]
                 if s["newState"]["type"] == "aws:elasticache/replicationGroup:ReplicationGroup")
    redis["newState"]["inputs"]["transitEncryptionEnabled"] = False
    message = golden_mismatch("dev", golden, json.dumps(plan, indent=2, sort_keys=True) + "\n")
    assert message is not None and "0 created, 1 updated, 0 deleted" in message
    assert f"update aws:elasticache/replicationGroup:ReplicationGroup {redis['urn'].rsplit('::', 1)[1]} " \
           "(transitEncryptionEnabled)" in message
    assert "`.venv/bin/mlplat synth --update-golden`" in message
    # Same resources, other order or formatting: still a change, and said to be one.
    reordered = golden_mismatch("dev", golden, json.dumps(json.loads(golden), indent=1) + "\n")
    assert reordered is not None and "(ordering or metadata only)" in reordered
