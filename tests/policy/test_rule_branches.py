"""Every way each rule can fail has a violating fixture that only that rule catches, and every
compliant fixture passes the whole pack (policies/examples.py). Which ways exist is read from the
rules' code: each place that produces a violation message must run for some violating fixture."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.offline.policy_eval import Plan, Violation, evaluate
from policies.config import resolve
from policies.examples import ALLOWED, ALLOWED_IN_DEV, BRANCHES, EXAMPLES
from policies.rules import ALL_RULES, RULES_BY_NAME
from policies.rules.base import PlanResource

RULES_DIR = Path(__file__).resolve().parents[2] / "policies" / "rules"


def _pack(resources: list[PlanResource], environment: str = "prod", rule: str = "",
          config: dict | None = None) -> list[Violation]:
    """The whole pack with its default config (plus `config` for `rule`), in `environment`."""
    resolved = resolve({rule: dict(config)} if config else {}, ALL_RULES)
    return evaluate(Plan(stack=environment, environment=environment, resources=resources), resolved)


PASSING = [(f"example:{name}", ex.passing, ex.environment, name, ex.config) for name, ex in EXAMPLES.items()]
PASSING += [(f"allowed:{what}", resources, "prod", "", None) for what, resources in ALLOWED.items()]
PASSING += [(f"allowed-in-dev:{what}", resources, "dev", "", None) for what, resources in ALLOWED_IN_DEV.items()]


@pytest.mark.parametrize(("resources", "environment", "rule", "config"), [p[1:] for p in PASSING],
                         ids=[p[0] for p in PASSING])
def test_compliant_fixture_passes_the_whole_pack(resources, environment, rule, config):
    assert _pack(resources, environment, rule, config) == []


VIOLATING = [(f"example:{name}", name, "", ex.violating, ex.environment, ex.config)
             for name, ex in EXAMPLES.items()]
VIOLATING += [(f"branch:{b.rule}:{b.message}", b.rule, b.message, b.resources, b.environment, None) for b in BRANCHES]


@pytest.mark.parametrize(("rule", "message", "resources", "environment", "config"), [v[1:] for v in VIOLATING],
                         ids=[v[0] for v in VIOLATING])
def test_violating_fixture_is_caught_by_its_rule_only(rule, message, resources, environment, config):
    found = _pack(resources, environment, rule, config)
    assert found, f"{rule} did not catch its fixture"
    assert {v.policy for v in found} == {rule}, [(v.policy, v.message) for v in found]
    assert not any(v.undecided for v in found)
    assert any(message in v.message for v in found), [v.message for v in found]


def test_every_rule_has_fixtures():
    assert set(EXAMPLES) == set(RULES_BY_NAME)
    assert {b.rule for b in BRANCHES} <= set(RULES_BY_NAME)


def _is_message_site(node: ast.AST) -> bool:
    yields = isinstance(node, ast.Yield) and node.value is not None
    appends = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "append"
               and getattr(node.func.value, "id", "") == "problems")
    returns = isinstance(node, ast.Return) and isinstance(node.value, ast.JoinedStr)
    return yields or appends or returns


def _message_sites() -> Iterator[tuple[Path, str, int, int]]:
    """(file, function, first line, last line) of each expression that produces a violation message:
    a `yield` of a value (not `yield from`), a `problems.append(...)`, a `return` of an f-string."""
    for path in sorted(RULES_DIR.glob("*.py")):
        if path.name in ("__init__.py", "base.py"):
            continue
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if _is_message_site(node):
                    yield path, fn.name, node.lineno, node.end_lineno or node.lineno


def _executed_lines(run) -> set[tuple[str, int]]:
    seen: set[tuple[str, int]] = set()
    rules_dir = str(RULES_DIR)

    def local(frame, event, _arg):
        if event == "line":
            seen.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def tracer(frame, _event, _arg):
        return local if frame.f_code.co_filename.startswith(rules_dir) else None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(old)
    return seen


def test_every_violation_message_is_reached_by_a_violating_fixture():
    sites = list(_message_sites())
    assert len(sites) > 60

    def run_all() -> None:
        for _id, rule, _message, resources, environment, config in VIOLATING:
            _pack(resources, environment, rule, config)

    executed = _executed_lines(run_all)
    missing = [f"{path.name}:{first} ({fn})" for path, fn, first, last in sites
               if not any((str(path), line) in executed for line in range(first, last + 1))]
    assert missing == [], "violation messages no violating fixture produces: " + ", ".join(missing)
