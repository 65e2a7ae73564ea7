"""Rule model shared by the offline evaluator and the CrossGuard pack adapter.

A resource rule is `check(resource_type, props, config, stack) -> Iterable[str]` (one message per
violation); a stack rule is `check(resources, config, stack) -> Iterable[(urn, message)]`. Props are
the resource inputs in wire form (camelCase), exactly what CrossGuard hands a policy. Nothing here
imports pulumi_policy: that package pins protobuf 5.29 and only lives in `.venv-policy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "disabled")
ENVIRONMENTS = ("dev", "staging", "prod")


@dataclass(frozen=True)
class StackInfo:
    """What a rule may know besides the resource: the stack, its tier, the provider's default tags."""

    name: str = ""
    environment: str = ""
    default_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PlanResource:
    """One resource as a stack rule sees it (mirrors pulumi_policy.PolicyResource)."""

    urn: str
    type: str
    name: str
    props: Mapping[str, Any]
    protect: bool = False
    parent: str | None = None
    dependencies: list[str] = field(default_factory=list)
    provider_props: Mapping[str, Any] | None = None


ResourceCheck = Callable[[str, Mapping[str, Any], Mapping[str, Any], StackInfo], Iterable[str]]
StackCheck = Callable[[Sequence[PlanResource], Mapping[str, Any], StackInfo], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    severity: str
    remediation: str
    check: Callable[..., Iterable[Any]]
    resource_types: tuple[str, ...] = ()  # empty: a stack rule
    enforcement: str = "mandatory"
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # JSON-schema properties
    area: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity {self.severity!r} not in {SEVERITIES}")
        if self.enforcement not in ENFORCEMENT_LEVELS:
            raise ValueError(f"rule {self.name}: enforcement {self.enforcement!r} not in {ENFORCEMENT_LEVELS}")
        for key, schema in self.config.items():
            if "default" not in schema:
                raise ValueError(f"rule {self.name}: config property {key!r} needs a default")

    @property
    def is_stack_rule(self) -> bool:
        return not self.resource_types

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config.items()}


def resource_rule(name: str, types: Sequence[str], *, description: str, severity: str, remediation: str,
                  area: str, enforcement: str = "mandatory",
                  config: Mapping[str, Mapping[str, Any]] | None = None) -> Callable[[ResourceCheck], Rule]:
    def wrap(fn: ResourceCheck) -> Rule:
        return Rule(name, description, severity, remediation, fn, tuple(types), enforcement, config or {}, area)
    return wrap


def stack_rule(name: str, *, description: str, severity: str, remediation: str, area: str,
               enforcement: str = "mandatory",
               config: Mapping[str, Mapping[str, Any]] | None = None) -> Callable[[StackCheck], Rule]:
    def wrap(fn: StackCheck) -> Rule:
        return Rule(name, description, severity, remediation, fn, (), enforcement, config or {}, area)
    return wrap


def environment_of(stack_name: str, *tag_sets: Mapping[str, Any]) -> str:
    """The tier: the stack name's last segment (`org/proj/prod`), else the first `Environment` tag."""
    last = stack_name.rsplit("/", 1)[-1]
    if last in ENVIRONMENTS:
        return last
    for tags in tag_sets:
        env = as_mapping(tags).get("Environment")
        if env:
            return str(env)
    return ""


def environments_config(default: Sequence[str]) -> dict[str, Any]:
    """Config property for rules that are requirements only in some tiers (e.g. Multi-AZ in prod)."""
    return {"type": "array", "items": {"type": "string", "enum": list(ENVIRONMENTS)}, "default": list(default),
            "description": "Environments in which the requirement applies."}


def applies(config: Mapping[str, Any], stack: StackInfo) -> bool:
    envs = config.get("environments")
    # An unknown tier gets the strict treatment: a missing Environment must not waive a rule.
    return envs is None or not stack.environment or stack.environment in envs


# --- value helpers: wire values arrive as bools, "true"/"false" strings or JSON-encoded strings ---

def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)):
        return [value]
    return list(value)


def as_mapping(value: Any) -> Mapping[str, Any]:
    """A nested object; the engine sometimes hands provider-level objects JSON-encoded."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return decoded if isinstance(decoded, Mapping) else {}
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 1:
        # Some SDK versions model single nested blocks as one-element lists.
        return as_mapping(value[0])
    return {}


def get_path(props: Mapping[str, Any], path: str) -> Any:
    value: Any = props
    for part in path.split("."):
        value = as_mapping(value).get(part)
        if value is None:
            return None
    return value


def policy_document(value: Any) -> Mapping[str, Any]:
    """An IAM/bucket policy given as a JSON string or an object; {} when not parseable yet."""
    doc = as_mapping(value)
    return doc


def statements(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, Mapping)]


def is_unknown(value: Any) -> bool:
    return value == "[unknown]"


def short(urn: str) -> str:
    """The resource name part of a URN, for messages."""
    return urn.rsplit("::", 1)[-1]
