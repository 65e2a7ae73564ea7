"""The model registry (contracts/model_registry.py) and what the config schema builds from it."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from contracts import model_registry
from contracts.model_registry import PLUGINS_ENV, RegistryError
from contracts.models import Features, ModelSpec, Resources, Serving, SpecError, Stream
from stacks.config import ConfigError, load_stack_file, stack_file
from stacks.schema import ModelsConfig, PlatformConfig, models_config

REPO = Path(__file__).resolve().parents[2]


def _class_defined(class_path: str) -> bool:
    """The class a spec names exists in this repository (read, not imported: no ML library here)."""
    module, _, cls = class_path.rpartition(".")
    path = REPO / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.ClassDef) and n.name == cls for n in tree.body)


def test_built_in_models_in_order():
    assert model_registry.names({}) == ("fraud", "sentiment", "recommendation")
    assert model_registry.stream_topics({}) == ("fraud-transactions",)


@pytest.mark.parametrize("spec", model_registry.specs({}), ids=lambda s: s.name)
def test_built_in_specs_name_existing_code(spec):
    assert _class_defined(spec.runtime) and _class_defined(spec.plugin)
    if spec.features is not None:
        assert (REPO / (spec.features.module.replace(".", "/") + ".py")).is_file()
    # Sample-data floors are looser than production floors, never a different metric.
    assert set(spec.sample_gates) <= set(spec.quality_gates)
    assert all(spec.sample_gates[m] <= spec.quality_gates[m] for m in spec.sample_gates)


def _plugin_package(root: Path, name: str, body: str) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "spec.py").write_text(textwrap.dedent(body))


SPEC_TEMPLATE = """
    from contracts.models import ModelSpec, Stream
    SPEC = ModelSpec(name={name!r}, description="A test model.", intended_use="tests",
                     runtime="p.runtime.R", plugin="p.plugin.P", quality_gates={{"auc": 0.9}},
                     sample_gates={{"auc": 0.5}}{extra})
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _plugin_package(tmp_path, "churnplug", SPEC_TEMPLATE.format(name="churn", extra=""))
    _plugin_package(tmp_path, "dupplug", SPEC_TEMPLATE.format(name="fraud", extra=""))
    _plugin_package(tmp_path, "streamplug", SPEC_TEMPLATE.format(
        name="clicks", extra=', stream=Stream(topic="clicks", ingestor="p.ingest")'))
    _plugin_package(tmp_path, "nospec", "X = 1\n")
    return tmp_path


def test_plugins_from_the_environment_variable_come_after_the_built_in_ones(plugins):
    env = {PLUGINS_ENV: " churnplug.spec , churnplug.spec,"}
    assert model_registry.spec_modules(env)[-1] == "churnplug.spec"
    assert model_registry.names(env) == ("fraud", "sentiment", "recommendation", "churn")
    assert model_registry.get("churn", env).quality_gates == {"auc": 0.9}
    with pytest.raises(ValueError, match="unknown model 'churn'; registered models: fraud, sentiment"):
        model_registry.get("churn", {})


@pytest.mark.parametrize(("modules", "message"), [
    ("dupplug.spec", "model name 'fraud' is declared twice: by ml.models.fraud.spec and by dupplug.spec"),
    ("streamplug.spec", "at most one model may declare a stream"),
    ("nospec.spec", "must define SPEC = ModelSpec"),
    ("missingplug.spec", "cannot be imported"),
])
def test_unusable_plugins_are_refused_with_the_module_named(plugins, modules, message):
    with pytest.raises(RegistryError, match=message):
        model_registry.specs({PLUGINS_ENV: modules})


def _spec(**changes) -> ModelSpec:
    fields = {"name": "toy", "description": "d", "intended_use": "u", "runtime": "a.B", "plugin": "a.P",
              "quality_gates": {"auc": 0.9}, "sample_gates": {"auc": 0.5}, **changes}
    return ModelSpec(**fields)


@pytest.mark.parametrize(("changes", "message"), [
    (lambda: {"name": "Churn-2"}, "lower-case letters and digits"),
    (lambda: {"runtime": "Runtime"}, "runtime must be a dotted class path"),
    (lambda: {"quality_gates": {"auc": "high"}}, "quality_gates must map metric names to numbers"),
    (lambda: {"metrics": ("auc",), "sample_gates": {"auk": 0.5}},
     "sample_gates name metrics its evaluation does not produce: auk \\(metrics: auc\\)"),
    (lambda: {"serving": Serving(min_replicas=3, max_replicas=2)}, "min_replicas <= max_replicas"),
    (lambda: {"features": Features(module="m.features", entities=(), feature_views=())}, "at least one feature"),
    (lambda: {"stream": Stream(topic="bad topic", ingestor="m.i")}, "not a valid Kafka topic"),
    (lambda: {"smoke_request": {"x": 1}}, "smoke_request must be a V2 body"),
])
def test_inconsistent_specs_are_refused(changes, message):
    with pytest.raises(SpecError, match=message):
        _spec(**changes())


def test_spec_is_immutable():
    spec = _spec()
    with pytest.raises(TypeError):
        spec.quality_gates["auc"] = 0.1  # type: ignore[index]
    with pytest.raises(SpecError, match="Kubernetes quantity"):
        Resources(cpu_request="lots", cpu_limit="1", memory_request="1Gi", memory_limit="1Gi")


def test_config_schema_has_one_key_per_registered_model_with_the_specs_defaults(plugins, monkeypatch):
    assert ModelsConfig().names() == model_registry.names({})
    assert ModelsConfig()["fraud"].quality_gates == {"auc": 0.95, "f1": 0.90}
    monkeypatch.setenv(PLUGINS_ENV, "churnplug.spec")
    with_plugin = models_config()
    churn = with_plugin.model_validate({"churn": {"minReplicas": 2}})["churn"]
    assert churn.min_replicas == 2 and churn.quality_gates == {"auc": 0.9}  # unset keys: the spec's defaults
    assert with_plugin.model_fields["churn"].description == "A test model."


def test_an_unknown_model_in_config_is_an_error_naming_the_key(tmp_path):
    text = stack_file("dev").read_text().replace("  mlplatform:models:\n", "  mlplatform:models:\n    churn: {}\n")
    assert "churn: {}" in text
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_stack_file(tmp_path / "Pulumi.dev.yaml")
    [issue] = err.value.issues
    assert issue.path == "mlplatform:models.churn"
    assert "unknown model; registered models: fraud, recommendation, sentiment" in issue.message


def test_kafka_topics_default_to_the_model_streams():
    field = PlatformConfig.model_fields["kafka"].annotation.model_fields["topics"]
    assert [t.name for t in field.default_factory()] == list(model_registry.stream_topics())
