"""Policy-pack configuration, resolved the way the Pulumi CLI does before it calls the analyzer.

A config file (`pulumi preview --policy-pack-config FILE`) maps a policy name, or `all`, to an
enforcement level string or to an object with an optional `enforcementLevel` and properties. The
CLI fills every property the user left out from the `default` of the policy's config schema and
validates the result against that schema; we do the same so offline runs see the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.rules.base import ENFORCEMENT_LEVELS, Rule

CONFIG_DIR = Path(__file__).resolve().parent / "config"
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,),
}


class PolicyConfigError(ValueError):
    """A policy config file names an unknown policy, level or property, or has a wrong type."""


@dataclass(frozen=True)
class ResolvedPolicy:
    enforcement: str
    config: dict[str, Any]


def _check_type(where: str, value: Any, schema: Mapping[str, Any]) -> None:
    expected = schema.get("type")
    if expected:
        ok = isinstance(value, _JSON_TYPES[expected]) and not (expected in ("integer", "number")
                                                               and isinstance(value, bool))
        if not ok:
            raise PolicyConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise PolicyConfigError(f"{where}: {value!r} is not one of {schema['enum']}")
    if expected == "array" and "items" in schema:
        for i, item in enumerate(value):
            _check_type(f"{where}[{i}]", item, schema["items"])
    if expected == "object" and "additionalProperties" in schema:
        for key, item in value.items():
            _check_type(f"{where}.{key}", item, schema["additionalProperties"])


def _level(where: str, value: Any) -> str:
    if value not in ENFORCEMENT_LEVELS:
        raise PolicyConfigError(f"{where}: enforcement level {value!r} is not one of {list(ENFORCEMENT_LEVELS)}")
    return str(value)


def resolve(raw: Mapping[str, Any] | None, rules: Sequence[Rule]) -> dict[str, ResolvedPolicy]:
    """Enforcement level and complete config (defaults filled, types checked) for every rule."""
    raw = dict(raw or {})
    by_name = {r.name: r for r in rules}
    unknown = sorted(set(raw) - set(by_name) - {"all"})
    if unknown:
        raise PolicyConfigError(f"policy config names unknown policies: {', '.join(unknown)}")
    all_level = _level("all", raw["all"]) if "all" in raw else None
    resolved: dict[str, ResolvedPolicy] = {}
    for rule in rules:
        entry = raw.get(rule.name)
        level = all_level or rule.enforcement
        props: dict[str, Any] = {}
        if isinstance(entry, str):
            level = _level(rule.name, entry)
        elif isinstance(entry, Mapping):
            props = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            if "enforcementLevel" in entry:
                level = _level(f"{rule.name}.enforcementLevel", entry["enforcementLevel"])
        elif entry is not None:
            raise PolicyConfigError(f"{rule.name}: expected an enforcement level or an object, got {entry!r}")
        extra = sorted(set(props) - set(rule.config))
        if extra:
            raise PolicyConfigError(f"{rule.name}: unknown config properties {extra}; "
                                    f"allowed: {sorted(rule.config) or 'none'}")
        merged = {**rule.defaults(), **props}
        for key, value in merged.items():
            _check_type(f"{rule.name}.{key}", value, rule.config[key])
        resolved[rule.name] = ResolvedPolicy(level, merged)
    return resolved


def load_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PolicyConfigError(f"{path}: policy config file not found") from exc
    except json.JSONDecodeError as exc:
        raise PolicyConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise PolicyConfigError(f"{path}: expected a JSON object of policy name -> config")
    return document


def stack_config_path(stack: str) -> Path:
    """The committed config of a stack (passed to `pulumi preview --policy-pack-config`)."""
    return CONFIG_DIR / f"{stack}.json"
