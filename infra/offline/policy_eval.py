"""Offline policy evaluation: run the pack's rules in-process against a plan.

A plan is the JSON `mlplat synth` writes, or the output of `pulumi preview --json` (same shape:
`steps[].newState` with type, urn, inputs, protect, dependencies, provider). Each rule runs through
its real check function with the config the Pulumi CLI would hand it (policies/config.py).

Values unknown in a preview (`mlplat synth --preview`, or a real first `pulumi preview --json`) are
the engine's placeholder strings. A rule that needs one reports that it can only decide at
`pulumi up`, as CrossGuard does ("can't run policy ... during preview", advisory): an `undecided`
entry, never a pass, a violation or a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from policies.config import ResolvedPolicy
from policies.rules import ALL_RULES, PlanResource, Rule, StackInfo
from policies.rules.base import UnknownAtPreview, as_mapping, environment_of, view

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class PlanFormatError(ValueError):
    """The file is not a plan this tool understands (not JSON, no steps, malformed step, ...)."""


@dataclass(frozen=True)
class Plan:
    stack: str
    environment: str
    resources: list[PlanResource]


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    resource_type: str
    message: str
    severity: str
    enforcement: str
    undecided: bool = False  # the rule needs a value unknown until `pulumi up` (advisory, as in CrossGuard)

    @property
    def resource(self) -> str:
        return self.urn.rsplit("::", 1)[-1] if self.urn else "(stack)"


def undecided_message(rule: str, exc: UnknownAtPreview) -> str:
    return f"can't run policy '{rule}' during preview: {exc}; it decides at `pulumi up`"


def _step_state(i: int, step: Any) -> Mapping[str, Any] | None:
    if not isinstance(step, Mapping):
        raise PlanFormatError(f"steps[{i}] is not an object")
    if step.get("op") in ("delete", "discard", "remove-pending-replace"):
        return None
    state = step.get("newState")
    if not isinstance(state, Mapping):
        raise PlanFormatError(f"steps[{i}] ({step.get('urn', '?')}) has no newState object")
    for key, kind in (("urn", str), ("type", str)):
        if not isinstance(state.get(key), kind) or not state.get(key):
            raise PlanFormatError(f"steps[{i}].newState.{key} is missing or not a string")
    if not str(state["urn"]).startswith("urn:pulumi:"):
        raise PlanFormatError(f"steps[{i}].newState.urn {state['urn']!r} is not a Pulumi URN")
    if not isinstance(state.get("inputs", {}), Mapping):
        raise PlanFormatError(f"steps[{i}].newState.inputs is not an object")
    return state


def parse_plan(document: Any, source: str = "plan") -> Plan:
    """Validate a plan document and turn it into the resources the rules see."""
    if not isinstance(document, Mapping):
        raise PlanFormatError(f"{source}: expected a JSON object with `steps` (mlplat synth / pulumi preview --json)")
    steps = document.get("steps")
    if not isinstance(steps, list):
        raise PlanFormatError(f"{source}: no `steps` list; not a plan from `mlplat synth` or `pulumi preview --json`")
    states = [s for i, step in enumerate(steps) if (s := _step_state(i, step)) is not None]
    try:
        states_by_urn = {s["urn"]: s for s in states}
        providers = {u: as_mapping(s.get("inputs")) for u, s in states_by_urn.items()
                     if s["type"].startswith("pulumi:providers:")}
        resources = [
            PlanResource(
                urn=s["urn"], type=s["type"], name=s["urn"].rsplit("::", 1)[-1], props=dict(s.get("inputs") or {}),
                protect=bool(s.get("protect", False)), parent=s.get("parent") or None,
                dependencies=[str(d) for d in s.get("dependencies") or []],
                provider_props=providers.get(_provider_urn(str(s.get("provider") or ""))),
            )
            for s in states
        ]
    except (TypeError, AttributeError) as exc:
        raise PlanFormatError(f"{source}: malformed step ({exc})") from exc
    stack = str(document.get("stack") or (resources[0].urn.split(":")[2] if resources else ""))
    env = str(as_mapping(document.get("config")).get("mlplatform:environment") or "")
    if not env:
        tags = [as_mapping(r.props.get("tags")) for r in resources]
        env = environment_of(stack, *[_default_tags(p) for p in providers.values()], *tags)
    return Plan(stack=stack, environment=env, resources=resources)


def _provider_urn(reference: str) -> str:
    """Provider references are `<urn>::<id>` in engine output and plain URNs in ours."""
    parts = reference.split("::")
    return "::".join(parts[:4]) if len(parts) > 4 else reference


def _default_tags(provider_props: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return as_mapping(as_mapping((provider_props or {}).get("defaultTags")).get("tags"))


def load_plan(path: Path) -> Plan:
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise PlanFormatError(f"{path}: file not found") from exc
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise PlanFormatError(f"{path}: not a readable JSON text file ({exc.__class__.__name__})") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFormatError(f"{path}: not valid JSON ({exc})") from exc
    return parse_plan(document, str(path))


def evaluate(plan: Plan, resolved: Mapping[str, ResolvedPolicy], rules: Sequence[Rule] = ALL_RULES) -> list[Violation]:
    """Every violation of every enabled rule, most severe first; then what a rule could not decide
    because a value is unknown until `pulumi up` (`undecided`, advisory)."""
    found: list[Violation] = []
    viewed = [replace(r, props=view(r.props)) for r in plan.resources]
    types = {r.urn: r.type for r in plan.resources}
    for rule in rules:
        policy = resolved[rule.name]
        if policy.enforcement == "disabled":
            continue

        def report(urn: str, message: str | UnknownAtPreview, rule: Rule = rule,
                   policy: ResolvedPolicy = policy) -> None:
            if isinstance(message, UnknownAtPreview):
                found.append(Violation(rule.name, urn, types.get(urn, ""), undecided_message(rule.name, message),
                                       rule.severity, "advisory", undecided=True))
            else:
                found.append(Violation(rule.name, urn, types.get(urn, ""), message, rule.severity,
                                       policy.enforcement))

        if rule.is_stack_rule:
            stack = StackInfo(plan.stack, plan.environment)
            try:
                for urn, message in rule.check(viewed, policy.config, stack):
                    report(urn, message)
            except UnknownAtPreview as exc:  # the rule as a whole needs an unknown value
                report("", exc)
            continue
        for r in viewed:
            if r.type in rule.resource_types:
                stack = StackInfo(plan.stack, plan.environment, dict(_default_tags(r.provider_props)))
                try:
                    for message in rule.check(r.type, r.props, policy.config, stack):
                        report(r.urn, message)
                except UnknownAtPreview as exc:
                    report(r.urn, exc)
    return sorted(found, key=lambda v: (v.undecided, v.enforcement != "mandatory", SEVERITY_ORDER[v.severity],
                                        v.policy, v.urn))


def violations_json(violations: Sequence[Violation]) -> list[dict[str, Any]]:
    return [{**asdict(v), "resource": v.resource} for v in violations]
