"""Load and validate a stack's configuration.

Two sources, one result: a `Pulumi.<env>.yaml` file (`mlplat validate-config`, tests, synth) or
the flat key/value config the Pulumi engine hands the program. Either way the raw values pass the
schema (`stacks/schema.py`) and the cross-field rules (`stacks/rules.py`) before any resource is
declared, and every problem is reported at once, each naming its key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from contracts.errors import UserError
from stacks.rules import ConfigIssue, check
from stacks.schema import NAMESPACE, PlatformConfig

STACKS_DIR = Path(__file__).resolve().parent
ENVIRONMENTS = ("dev", "staging", "prod")
# Provider namespaces whose keys Pulumi itself consumes; passed through unvalidated except aws:region.
PROVIDER_NAMESPACES = ("aws", "kubernetes", "random", "pulumi")


class ConfigError(UserError, ValueError):
    """The stack config is invalid; `issues` holds one entry per problem."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {i}" for i in issues)
        super().__init__(f"invalid stack config {source} ({len(issues)} problem(s)):\n{lines}")


STACKS_DIR_ENV = "MLPLAT_STACKS_DIR"


def stack_file(env: str) -> Path:
    """`Pulumi.<env>.yaml` in stacks/, or in $MLPLAT_STACKS_DIR (stack files kept outside the checkout)."""
    override = os.environ.get(STACKS_DIR_ENV)
    return (Path(override) if override else STACKS_DIR) / f"Pulumi.{env}.yaml"


def load_stack_file(path: str | Path) -> PlatformConfig:
    """Validate one `Pulumi.<stack>.yaml` file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigIssue("<file>", "does not exist")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [ConfigIssue("<file>", f"is not valid YAML: {exc}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise ConfigError(str(path), [ConfigIssue("config", "the file needs a top-level `config:` mapping")])
    return from_flat_config(document["config"], source=str(path))


def from_flat_config(flat: Mapping[str, Any], source: str = "<pulumi config>") -> PlatformConfig:
    """Validate Pulumi-style flat config (`namespace:key` -> value; objects may be JSON strings)."""
    raw: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    for key, value in flat.items():
        namespace, _, name = str(key).partition(":")
        if namespace == NAMESPACE and name and name != "region":
            raw[name] = _decode(value)
        elif key == "aws:region":
            raw["region"] = value
        elif namespace in PROVIDER_NAMESPACES and name:
            continue
        else:
            issues.append(ConfigIssue(str(key), f"unknown key; platform keys are `{NAMESPACE}:<name>` "
                                      f"(allowed: {', '.join(_top_level_keys())}) or provider keys like aws:region"))
    if "region" not in raw:
        issues.append(ConfigIssue("aws:region", "is required (e.g. eu-west-1)"))
    if issues:
        raise ConfigError(source, issues)
    try:
        cfg = PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, [_issue_from_pydantic(e) for e in exc.errors()]) from None
    problems = check(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def _decode(value: Any) -> Any:
    # The Pulumi engine passes structured values as JSON strings.
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _top_level_keys() -> list[str]:
    return sorted(f.alias or n for n, f in PlatformConfig.model_fields.items() if n != "region")


def _issue_from_pydantic(error: Mapping[str, Any]) -> ConfigIssue:
    loc = [str(p) for p in error["loc"]]
    path = "aws:region" if loc[:1] == ["region"] else f"{NAMESPACE}:" + ".".join(loc)
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden" and loc[:-1] == ["models"]:
        message = (f"unknown model; registered models: {', '.join(_allowed_keys(loc[:-1]))} (a model is added "
                   f"by its spec module, see docs/MODELS.md \"Adding a model\")")
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = f"unknown key; allowed keys here: {', '.join(allowed)}"
    elif kind == "missing":
        message = "is required"
    else:
        message = f"{message} (got {error.get('input')!r})"
    return ConfigIssue(path, message)


def _allowed_keys(loc: list[str]) -> list[str]:
    """Keys accepted by the model found at `loc` (walks models, dicts and lists of models)."""
    model: type[BaseModel] | None = PlatformConfig
    for part in loc:
        if model is None:
            break
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            # A dict key (node group name) or a list index: stay on the value model.
            continue
        model = _value_model(field.annotation)
    if model is None:
        return []
    return sorted(f.alias or n for n, f in model.model_fields.items())


def _value_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _value_model(arg)
        if found is not None:
            return found
    return None
