"""The one list of models: the built-in spec modules, plus plugins named in `MLPLAT_MODEL_PLUGINS`.

Every consumer iterates this registry instead of naming models: the config schema
(`mlplatform:models.<name>`), gates, model slots, the Seldon Models and server sizing, the Feast
definitions, the local platform, the smoke test, the benchmarks, the dashboards and the Kafka topic
defaults. A spec module is a module with a `SPEC = ModelSpec(...)` attribute that imports only the
standard library and `contracts` (contracts/models.py), so every environment can load it.

Adding a model without touching this repository: put a package with `spec.py` (and the plugin and
runtime it names) on PYTHONPATH and set `MLPLAT_MODEL_PLUGINS=my_pkg.spec[,other.spec]` wherever the
platform runs (docs/MODELS.md, "Adding a model").
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Mapping

from contracts.models import ModelSpec, Stream

PLUGINS_ENV = "MLPLAT_MODEL_PLUGINS"
BUILTIN_SPEC_MODULES = (
    "ml.models.fraud.spec",
    "ml.models.sentiment.spec",
    "ml.models.recommendation.spec",
)


class RegistryError(ValueError):
    """The set of spec modules is not usable; the message names the module or model and the fix."""


def spec_modules(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Built-in spec modules, then those of `MLPLAT_MODEL_PLUGINS` (comma-separated), each once."""
    env = os.environ if environ is None else environ
    extra = [m.strip() for m in env.get(PLUGINS_ENV, "").split(",") if m.strip()]
    return tuple(dict.fromkeys((*BUILTIN_SPEC_MODULES, *extra)))


def load_spec(module_name: str) -> ModelSpec:
    """The `SPEC` of one spec module."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"model spec module {module_name!r} cannot be imported ({exc}); built-in modules are listed in "
            f"contracts/model_registry.py, plugins in ${PLUGINS_ENV} (their package must be on PYTHONPATH)"
        ) from exc
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, ModelSpec):
        raise RegistryError(f"model spec module {module_name!r} must define SPEC = ModelSpec(...), "
                            f"found {type(spec).__name__}")
    return spec


@functools.cache
def _load(modules: tuple[str, ...]) -> tuple[ModelSpec, ...]:
    specs: dict[str, tuple[str, ModelSpec]] = {}
    for module_name in modules:
        spec = load_spec(module_name)
        if spec.name in specs:
            raise RegistryError(f"model name {spec.name!r} is declared twice: by {specs[spec.name][0]} and "
                                f"by {module_name}")
        specs[spec.name] = (module_name, spec)
    streams = [(m, s) for m, s in specs.values() if s.stream is not None]
    if len(streams) > 1:
        raise RegistryError("at most one model may declare a stream (the platform runs one stream ingestor); "
                            f"declared by: {', '.join(m for m, _ in streams)}")
    return tuple(s for _, s in specs.values())


def specs(environ: Mapping[str, str] | None = None) -> tuple[ModelSpec, ...]:
    """Every registered model's spec, built-in ones first, in registration order."""
    return _load(spec_modules(environ))


def names(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    return tuple(s.name for s in specs(environ))


def get(name: str, environ: Mapping[str, str] | None = None) -> ModelSpec:
    """The spec of model `name`; a ValueError that lists the registered names otherwise."""
    for spec in specs(environ):
        if spec.name == name:
            return spec
    raise ValueError(f"unknown model {name!r}; registered models: {', '.join(names(environ))} "
                     f"(add one with ${PLUGINS_ENV}, docs/MODELS.md)")


def stream(environ: Mapping[str, str] | None = None) -> Stream | None:
    """The one model stream the platform's stream ingestor consumes, if a registered model declares one."""
    return next((s.stream for s in specs(environ) if s.stream is not None), None)


def stream_topics(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Kafka topics the registered models' streams read (the default of `mlplatform:kafka.topics`)."""
    return tuple(s.stream.topic for s in specs(environ) if s.stream is not None)
