"""Golden offline plans: a changed plan fails here until the golden file is refreshed and reviewed."""

from __future__ import annotations

import json

import pytest

from infra.offline.golden import REFRESH_COMMAND, STACKS, golden_path, render
from infra.offline.plan_diff import diff_plans
from infra.offline.policy_eval import parse_plan


@pytest.mark.parametrize("stack", STACKS)
def test_golden_plan_matches_synthesis(synth, stack):
    path = golden_path(stack)
    assert path.exists(), f"{path} is missing; create it with `{REFRESH_COMMAND}`"
    current = render(synth(stack))
    if current == path.read_text():
        return
    d = diff_plans(json.loads(path.read_text()), json.loads(current), stack, "golden", "synthesized")
    changed = [f"{c.op} {c.type} {c.name}" + (f" ({', '.join(c.paths[:5])})" if c.paths else "")
               for c in d.changes[:15]]
    pytest.fail(
        f"the offline plan of {stack} changed ({d.count('create')} created, {d.count('update')} updated, "
        f"{d.count('delete')} deleted):\n  " + "\n  ".join(changed or ["(ordering or metadata only)"])
        + f"\nIf intended, refresh and commit it: `{REFRESH_COMMAND}` (review the diff in the pull request)."
    )


@pytest.mark.parametrize("stack", STACKS)
def test_golden_plan_is_a_valid_policy_input(stack):
    plan = parse_plan(json.loads(golden_path(stack).read_text()), stack)
    assert plan.stack == stack
    assert plan.environment == stack
    assert len(plan.resources) > 50


def test_golden_failure_message_names_refresh_command():
    assert "--update-golden" in REFRESH_COMMAND
