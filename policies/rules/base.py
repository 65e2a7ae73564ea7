"""Rule model shared by the offline evaluator and the CrossGuard pack adapter.

A resource rule is `check(resource_type, props, config, stack) -> Iterable[str]` (one message per
violation); a stack rule is `check(resources, config, stack) -> Iterable[(urn, message)]`. Props are
the resource inputs in wire form (camelCase), exactly what CrossGuard hands a policy. Nothing here
imports pulumi_policy: that package pins protobuf 5.29 and only lives in `.venv-policy`.

Unknown values. In a preview, inputs built from outputs of resources not yet created are unknown
(the engine's placeholder strings, `UNKNOWN_VALUES`). Rules see props through `view()`: reading an
unknown value raises `UnknownAtPreview` with its path, which the runners report the way CrossGuard
reports its `UnknownValueError` ("can't run policy ... during preview", advisory), so no rule ever
compares, counts or parses a placeholder as if it were the value. A rule that can decide without the
value asks whether it is set (`is_set`), how many items a list has (`size`), or peeks at it
(`peek`, then `is_unknown`). A stack rule yields `(urn, UnknownAtPreview)` for the one resource it
cannot judge yet and goes on with the others. Each rule states in `decided` when it can decide:
`preview` (from inputs a first preview knows) or `update` (it needs values AWS assigns on create);
docs/POLICIES.md lists both, with the preview-time guard of each security rule decided at update.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.guardrails import TIERS, tier_minimum

SEVERITIES = ("low", "medium", "high", "critical")
DECIDED = ("preview", "update")
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "disabled")
ENVIRONMENTS = TIERS


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
    # When the rule can decide: "preview" (from what a first preview knows) or "update" (it needs
    # values AWS assigns on create; `preview_guard` then names what enforces the property at preview).
    decided: str = "preview"
    preview_guard: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity {self.severity!r} not in {SEVERITIES}")
        if self.decided not in DECIDED:
            raise ValueError(f"rule {self.name}: decided {self.decided!r} not in {DECIDED}")
        if self.decided == "update" and not self.preview_guard:
            raise ValueError(f"rule {self.name}: decided at update needs a preview_guard (what checks it earlier)")
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
                  config: Mapping[str, Mapping[str, Any]] | None = None, decided: str = "preview",
                  preview_guard: str = "") -> Callable[[ResourceCheck], Rule]:
    def wrap(fn: ResourceCheck) -> Rule:
        return Rule(name, description, severity, remediation, fn, tuple(types), enforcement, config or {}, area,
                    decided, preview_guard)
    return wrap


def stack_rule(name: str, *, description: str, severity: str, remediation: str, area: str,
               enforcement: str = "mandatory", config: Mapping[str, Mapping[str, Any]] | None = None,
               decided: str = "preview", preview_guard: str = "") -> Callable[[StackCheck], Rule]:
    def wrap(fn: StackCheck) -> Rule:
        return Rule(name, description, severity, remediation, fn, (), enforcement, config or {}, area, decided,
                    preview_guard)
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


def tier_minimums_config(default: Mapping[str, int], description: str) -> dict[str, Any]:
    """Config property holding one minimum per tier (defaults from contracts/guardrails.py, which the stack
    config validation uses too)."""
    return {"type": "object", "additionalProperties": {"type": "integer"}, "default": dict(default),
            "description": f"{description}, per environment; an environment not listed gets the largest."}


def tier_minimum_of(minimums: Mapping[str, Any], stack: StackInfo) -> int:
    """The stack's minimum from a `tier_minimums_config` value (an unknown tier gets the strictest)."""
    return tier_minimum({tier: int(value) for tier, value in minimums.items()}, stack.environment)


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


# --- unknown values (previews) ---

# The engine's computed-value placeholder (what `pulumi preview --json` prints and what the Python
# SDK's rpc.UNKNOWN is), and the typed sentinels pulumi_policy's proxy recognises (proxy.py).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
UNKNOWN_VALUES = frozenset({
    UNKNOWN,
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    "[unknown]",  # older offline plans
})


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_VALUES


class UnknownAtPreview(Exception):
    """A rule needs a value that is unknown until `pulumi up` creates the resources it comes from."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"value at .{path} can't be known during preview")


class _MappingView(Mapping[str, Any]):
    """Props as a rule reads them: reading an unknown value raises `UnknownAtPreview`."""

    __slots__ = ("_path", "_raw")

    def __init__(self, raw: Mapping[str, Any], path: str) -> None:
        self._raw, self._path = raw, path

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._raw[key], f"{self._path}.{key}" if self._path else str(key))

    def __contains__(self, key: object) -> bool:  # presence, without reading the value
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"view({self._raw!r})"


class _SequenceView(Sequence[Any]):
    __slots__ = ("_path", "_raw")

    def __init__(self, raw: Sequence[Any], path: str) -> None:
        self._raw, self._path = raw, path

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._raw)))]
        return _wrap(self._raw[index], f"{self._path}[{index}]")

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"view({self._raw!r})"


def _wrap(value: Any, path: str) -> Any:
    if is_unknown(value):
        raise UnknownAtPreview(path)
    if isinstance(value, (_MappingView, _SequenceView)):
        return value
    if isinstance(value, Mapping):
        return _MappingView(value, path)
    if isinstance(value, (list, tuple)):
        return _SequenceView(value, path)
    return value


def view(props: Mapping[str, Any], path: str = "") -> Mapping[str, Any]:
    """Props (a plain mapping) as rules must read them."""
    return props if isinstance(props, _MappingView) else _MappingView(props, path)


def raw(value: Any) -> Any:
    """The plain value behind a view (placeholders included), for messages and peeking."""
    if isinstance(value, (_MappingView, _SequenceView)):
        return value._raw
    return value


def peek(mapping: Any, key: str) -> Any:
    """The value at `key` without the unknown check: the placeholder string when it is unknown."""
    inner = raw(mapping)
    return inner.get(key) if isinstance(inner, Mapping) else None


def is_set(mapping: Any, key: str) -> bool:
    """Whether `key` holds a value, known or not: a reference to a resource not created yet is set."""
    value = peek(mapping, key)
    return is_unknown(value) or (value is not None and value != "" and value != [] and value != {})


def size(value: Any) -> int:
    """How many items a list holds, without reading them (items may be unknown ids)."""
    inner = raw(value)
    if inner is None:
        return 0
    if isinstance(inner, (str, bytes, Mapping)):
        return 1
    return len(inner)


def per_resource(resources: Iterable[PlanResource],
                 check: Callable[[PlanResource], Iterable[str]]) -> Iterator[tuple[str, str | UnknownAtPreview]]:
    """A stack rule's verdicts, one resource at a time: a resource it cannot judge at preview is
    reported as such and the others are still judged."""
    for r in resources:
        try:
            for message in check(r):
                yield r.urn, message
        except UnknownAtPreview as exc:
            yield r.urn, exc


def short(urn: str) -> str:
    """The resource name part of a URN, for messages."""
    return urn.rsplit("::", 1)[-1]
