"""Every registered model's behaviour plugin and runtime load, and its spec tells the truth about them."""

from __future__ import annotations

import importlib

import pytest

from contracts import model_registry
from ml.model_plugin import ModelPlugin, load_plugin, plugins
from ml.serving.runtime_base import ReferenceRuntime

pytestmark = pytest.mark.ml


@pytest.mark.parametrize("name", model_registry.names())
def test_plugin_and_runtime_load(name):
    spec = model_registry.get(name)
    plugin = load_plugin(name)
    assert isinstance(plugin, ModelPlugin) and plugin.spec is spec and plugin.name == name
    module, _, cls = spec.runtime.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), cls), ReferenceRuntime)


@pytest.mark.parametrize("name", model_registry.names())
def test_spec_names_the_feast_objects_the_plugin_defines(name, tmp_path):
    from feast import Entity, FeatureView

    spec, plugin = model_registry.get(name), load_plugin(name)
    objects = plugin.feature_definitions(tmp_path)
    entities = tuple(o.name for o in objects if isinstance(o, Entity))
    views = tuple(o.name for o in objects if isinstance(o, FeatureView))
    if spec.features is None:
        assert objects == [] and plugin.write_feature_data(tmp_path, tmp_path / "parquet") == {}
    else:
        assert (entities, views) == (spec.features.entities, spec.features.feature_views)


def test_plugins_follow_the_registry():
    assert [p.name for p in plugins()] == list(model_registry.names())


def test_unknown_model_and_wrong_plugin_class_are_refused():
    with pytest.raises(ValueError, match="unknown model 'nope'; registered models: fraud"):
        load_plugin("nope")
    from dataclasses import replace

    from ml import model_plugin as plugin_module

    bad = replace(model_registry.get("sentiment"), name="wrongclass", plugin="ml.serving.runtime_base.ReferenceRuntime")
    with pytest.raises(TypeError, match=r"must be a subclass of ml\.model_plugin\.ModelPlugin"):
        plugin_module._plugin(bad)
    missing = replace(bad, name="missing", plugin="ml.models.nothing.plugin.Nothing")
    with pytest.raises(RuntimeError, match=r"plugin class ml\.models\.nothing\.plugin\.Nothing cannot be loaded"):
        plugin_module._plugin(missing)
