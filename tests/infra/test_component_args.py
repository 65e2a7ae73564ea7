"""Every component takes its inputs as one typed `<Component>Args` dataclass, as Pulumi's own
components do: `Component(name, ComponentArgs(...), opts)`, never a long positional list."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing

import pulumi
import pytest

import infra.aws
import infra.workloads


def _components() -> list[type[pulumi.ComponentResource]]:
    found = []
    for package in (infra.aws, infra.workloads):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            found += [c for _n, c in inspect.getmembers(module, inspect.isclass)
                      if issubclass(c, pulumi.ComponentResource) and c.__module__ == module.__name__]
    return sorted(found, key=lambda c: c.__qualname__)


COMPONENTS = _components()


def test_components_are_found():
    assert len(COMPONENTS) >= 20, [c.__name__ for c in COMPONENTS]


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.__name__)
def test_component_takes_name_args_opts(component):
    params = list(inspect.signature(component.__init__).parameters)
    assert params == ["self", "name", "args", "opts"], f"{component.__name__}{params}"
    args_type = typing.get_type_hints(component.__init__)["args"]
    assert args_type.__name__ == f"{component.__name__}Args"
    assert dataclasses.is_dataclass(args_type)
    assert args_type.__dataclass_params__.frozen
    fields = dataclasses.fields(args_type)
    assert fields[0].name == "ctx" and all(f.kw_only for f in fields)
