"""Every structural check of the stack-config schema has a failing case, read from the schema itself:
each range, length, pattern, allowed value, type and required key of every field (nested sections,
node groups, topics and models included) is broken once on the dev stack, and the error names that
key and says what is wrong. Checks written as validators (what AWS itself rejects: CIDR sizes, tag and
label syntax, window formats) have explicit cases below; the cross-field rules have theirs in
test_config_validation.py."""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import annotated_types as at
import pytest
import yaml
from pydantic import BaseModel, StringConstraints

from stacks.config import ConfigError, from_flat_config, stack_file
from stacks.schema import NAMESPACE, PlatformConfig

BASE = yaml.safe_load(stack_file("dev").read_text())["config"]
MISSING = object()


def _raw(flat: dict[str, Any]) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in flat.items() if k.startswith(f"{NAMESPACE}:")}


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(bare type, constraint metadata), through Optional and Annotated."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata += extra
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation, metadata


def _model(annotation: Any) -> type[BaseModel] | None:
    bare, _ = _unwrap(annotation)
    return bare if isinstance(bare, type) and issubclass(bare, BaseModel) else None


def _sample(bare: Any) -> Any:
    """A valid item of a list, to make one too long."""
    if bare is IPv4Network:
        return "203.0.113.0/32"
    if typing.get_origin(bare) is typing.Literal:
        return typing.get_args(bare)[0]
    return "eu-west-1a"


def _broken(bare: Any, metadata: list[Any]) -> Iterator[tuple[str, Any, str]]:
    """(what, bad value, message fragment) for each check on a value of this type."""
    origin = typing.get_origin(bare)
    for m in metadata:
        if isinstance(m, at.Ge):
            yield "ge", m.ge - (1 if isinstance(m.ge, int) else 0.5), f"greater than or equal to {m.ge}"
        elif isinstance(m, at.Gt):
            yield "gt", m.gt, f"greater than {m.gt}"
        elif isinstance(m, at.Le):
            yield "le", m.le + 1, f"less than or equal to {m.le}"
        elif isinstance(m, at.Lt):
            yield "lt", m.lt, f"less than {m.lt}"
        elif isinstance(m, at.MinLen) and origin is list:
            yield "min_length", [], f"at least {m.min_length}"
        elif isinstance(m, at.MaxLen) and origin is list:
            item, _ = _unwrap(typing.get_args(bare)[0])
            yield "max_length", [_sample(item)] * (m.max_length + 1), f"at most {m.max_length}"
        elif isinstance(m, StringConstraints) and m.pattern:
            yield "pattern", "?not valid?", "should match pattern"
    if origin is typing.Literal:
        choices = typing.get_args(bare)
        yield "choice", 99999 if isinstance(choices[0], int) else "not-a-choice", "Input should be"
    elif bare is bool:
        yield "type", "maybe", "valid boolean"
    elif bare is int:
        yield "type", "many", "valid integer"
    elif bare is float:
        yield "type", "much", "valid number"
    elif bare is IPv4Network:
        yield "type", "10.0.0.0/33", "valid IPv4 network"
    elif origin is list:
        item, item_meta = _unwrap(typing.get_args(bare)[0])
        if _model(item) is None:
            for what, value, fragment in _broken(item, item_meta):
                if what != "required":
                    yield f"item {what}", [value], fragment


def _fields(model: type[BaseModel], path: tuple, raw: Any) -> Iterator[tuple[tuple, Any, Any]]:
    """(key path, field, value in the dev stack or MISSING) of every leaf field, recursively."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        here = (*path, key)
        value = raw.get(key, MISSING) if isinstance(raw, dict) else MISSING
        sub = _model(field.annotation)
        bare, _ = _unwrap(field.annotation)
        origin = typing.get_origin(bare)
        if sub is not None:
            yield from _fields(sub, here, value if value is not MISSING else {})
        elif origin is dict and _model(typing.get_args(bare)[1]) is not None and isinstance(value, dict) and value:
            first = next(iter(value))  # a node group of the dev stack
            yield from _fields(_model(typing.get_args(bare)[1]), (*here, first), value[first])
        elif origin is list and _model(typing.get_args(bare)[0]) is not None and isinstance(value, list) and value:
            yield from _fields(_model(typing.get_args(bare)[0]), (*here, 0), value[0])
        else:
            yield here, field, value


def _cases() -> Iterator[tuple[str, tuple, Any, str, tuple]]:
    """(check, key path, bad value, message fragment, key path the error names)."""
    for path, field, value in _fields(PlatformConfig, (), {**_raw(BASE), "region": BASE["aws:region"]}):
        bare, metadata = _unwrap(field.annotation)
        # Validators (AfterValidator) have explicit cases below; the type's own checks still apply.
        for what, bad, fragment in _broken(bare, [*field.metadata, *metadata]):
            yield what, path, bad, fragment, (*path, 0) if what.startswith("item") else path
        if field.is_required() and value is not MISSING:
            yield "required", path, MISSING, "is required", path


CASES = list(_cases())


def _flat_with(path: tuple, value: Any) -> dict[str, Any]:
    flat = copy.deepcopy(BASE)
    if path == ("region",):
        if value is MISSING:
            del flat["aws:region"]
        else:
            flat["aws:region"] = value
        return flat
    key = f"{NAMESPACE}:{path[0]}"
    if len(path) == 1:
        if value is MISSING:
            del flat[key]
        else:
            flat[key] = value
        return flat
    target = flat.setdefault(key, {})
    for part in path[1:-1]:
        target = target[part] if isinstance(target, list) else target.setdefault(part, {})
    if value is MISSING:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return flat


def _issues(flat: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_flat_config(flat)
    return [str(i) for i in info.value.issues]


def _key(path: tuple) -> str:
    return "aws:region" if path == ("region",) else f"{NAMESPACE}:" + ".".join(str(p) for p in path)


def test_the_schema_has_checks_to_break():
    kinds = {what for what, *_ in CASES}
    assert len(CASES) > 150
    assert {"ge", "le", "pattern", "choice", "type", "required", "min_length", "max_length"} <= kinds


@pytest.mark.parametrize(("what", "path", "bad", "fragment", "named"), CASES,
                         ids=[f"{'.'.join(map(str, c[1]))}:{c[0]}" for c in CASES])
def test_schema_check_fails_with_key_and_reason(what, path, bad, fragment, named):
    issues = _issues(_flat_with(path, bad))
    assert any(i.startswith(_key(named) + ":") and fragment in i for i in issues), issues


# What AWS (or Kubernetes, for EKS node labels) rejects, checked by the schema's validators.
AWS_CASES = [
    ("network.vpcCidr", "10.0.0.0/8", "network.vpcCidr", "AWS accepts /16 to /28 for a VPC, got /8"),
    ("network.vpcCidr", "10.10.0.0/29", "network.vpcCidr", "AWS accepts /16 to /28 for a VPC, got /29"),
    ("network.privateSubnetCidrs", ["10.10.32.0/19", "10.10.64.0/19", "10.10.96.0/29"],
     "network.privateSubnetCidrs.2", "AWS accepts /16 to /28 for a subnet, got /29"),
    ("network.publicSubnetCidrs", ["10.10.0.0/15", "10.10.1.0/24", "10.10.2.0/24"],
     "network.publicSubnetCidrs.0", "AWS accepts /16 to /28 for a subnet, got /15"),
    ("network.publicSubnetCidrs", ["10.10.0.1/24", "10.10.1.0/24", "10.10.2.0/24"],
     "network.publicSubnetCidrs.0", "valid IPv4 network"),  # host bits set
    ("region", "eu-west", "region", "should match pattern"),
    ("region", "EU-WEST-1", "region", "should match pattern"),
    ("redis.snapshotWindow", "25:00-26:00", "redis.snapshotWindow", "should match pattern"),
    ("redis.snapshotWindow", "03:60-04:00", "redis.snapshotWindow", "should match pattern"),
    ("redis.snapshotWindow", "3:00-4:00", "redis.snapshotWindow", "should match pattern"),
    ("redis.maintenanceWindow", "sun:05:00-mon", "redis.maintenanceWindow", "should match pattern"),
    ("redis.maintenanceWindow", "sunday:05:00-sunday:06:00", "redis.maintenanceWindow", "should match pattern"),
    ("database.backupWindow", "01:00-24:00", "database.backupWindow", "should match pattern"),
    ("database.maintenanceWindow", "sun:02:30-sun:03:75", "database.maintenanceWindow", "should match pattern"),
    ("tags", {"aws:team": "ml"}, "tags", "the aws: prefix is reserved"),
    ("tags", {"k" * 129: "v"}, "tags", "AWS allows 1 to 128"),
    ("tags", {"Team": "v" * 257}, "tags", "AWS allows 256"),
    ("tags", {f"t{i}": "v" for i in range(41)}, "tags", "41 tags; AWS allows 50 per resource"),
    ("nodeGroups.general.labels", {"team/": "x"}, "nodeGroups.general.labels", "is not [prefix/]name"),
    ("nodeGroups.general.labels", {"tier": "-bad"}, "nodeGroups.general.labels", "a value is empty or <= 63"),
    ("nodeGroups.general.labels", {"tier": "v" * 64}, "nodeGroups.general.labels", "a value is empty or <= 63"),
    ("nodeGroups.general.instanceTypes", ["m6i xlarge"], "nodeGroups.general.instanceTypes.0", "should match pattern"),
    ("workloads.mlflow.resources.memoryLimit", "1GB", "workloads.mlflow.resources.memoryLimit",
     "should match pattern"),
    ("workloads.feast.materializationSchedule", "every 15 minutes", "workloads.feast.materializationSchedule",
     "should match pattern"),
]


@pytest.mark.parametrize(("key", "value", "path", "fragment"), AWS_CASES, ids=[f"{c[0]}={c[1]!r}"[:80]
                                                                            for c in AWS_CASES])
def test_what_aws_rejects_is_rejected_at_validation(key, value, path, fragment):
    issues = _issues(_flat_with(tuple(key.split(".")), value))
    assert any(i.startswith(_key(tuple(path.split("."))) + ":") and fragment in i for i in issues), issues


@pytest.mark.parametrize(("key", "value"), [
    ("tags", {"Team": "ml", "CostCenter": ""}),
    ("nodeGroups.general.labels", {"example.com/team": "ml-platform", "tier": ""}),
    ("secrets.recoveryWindowDays", 0),
    ("redis.snapshotWindow", "23:30-00:30"),  # across midnight
    ("workloads.feast.materializationSchedule", "@hourly"),
    ("workloads.mlflow.resources.cpuRequest", "0.5"),
])
def test_what_aws_accepts_is_accepted(key, value):
    from_flat_config(_flat_with(tuple(key.split(".")), value))
