"""Declared settings that create nothing: every key the stack schema (stacks/schema.py) validates must
be read by the Pulumi program, or it is a promise (in docs/CONFIG.md) that no resource keeps and clients
find out at run time.

The program is `__main__.py`, `stacks/context.py` and `stacks/delivery.py` (values derived from the config,
the deploy tree's inputs) and the modules under `infra/aws/` and `infra/workloads/`; the validation rules
(`stacks/rules.py`) do not count, since checking a value is not using it. A key counts as read when its
Python name is an attribute the program reads (`cfg.kafka.topics`, `t.partitions`) or a name it passes to
`getattr`. The scan is by name: a field that shares its name with a read field of another section passes (a
limit written in docs/CONFORMANCE.md).
"""

from __future__ import annotations

import ast
import types
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from infra.conformance.model import Problem
from stacks.schema import ModelsSection, PlatformConfig

CHECK = "dead-setting"
ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ("__main__.py", "stacks/context.py", "stacks/delivery.py", "infra/aws", "infra/workloads")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config sections an annotation holds (through Optional, Annotated, list and dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (list, dict, tuple, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def settings(model: type[BaseModel] = PlatformConfig, prefix: str = "mlplatform:") -> Iterator[tuple[str, str]]:
    """(config key as the stack file writes it, Python attribute name) of every field, nested ones included."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        nested = _models_in(info.annotation)
        if nested and issubclass(nested[0], ModelsSection):
            # One field per registered model, all of one shape: report them once, as <model>.
            model_fields = next(iter(nested[0].model_fields.values())).annotation
            yield from settings(model_fields, f"{prefix}{info.alias or name}.<model>.")
            continue
        if nested:
            container = {list: "[]", dict: ".<name>"}.get(typing.get_origin(info.annotation), "")
            yield from settings(nested[0], f"{key}{container}.")
            continue
        yield key, name


@cache
def read_names(root: Path = ROOT) -> frozenset[str]:
    """Attribute names the program reads, and the names it passes to getattr."""
    names: set[str] = set()
    files: list[Path] = []
    for entry in PROGRAM:
        path = root / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                names.add(str(node.args[1].value))
    return frozenset(names)


def check(root: Path = ROOT) -> list[Problem]:
    used = read_names(root)
    return [Problem(CHECK, key, "validated by the stack schema but read by no resource of the program: the setting "
                               "changes nothing in AWS or the cluster")
            for key, name in settings() if name not in used]
