"""The typed specification of one model: everything the platform needs to know about it, as data.

Each model package declares one `SPEC = ModelSpec(...)` in its `spec.py` (ml/models/<name>/spec.py),
a module that imports only the standard library and `contracts` (the IaC environment loads it to
declare the cluster side, and no ML library is installed there). contracts/model_registry.py lists
the spec modules; every consumer (config schema, gates, model slots, Seldon sizing, Feast
definitions, local platform, smoke test, benchmarks, dashboards, Kafka topics) iterates the registry.

The model's behaviour (data, training, evaluation, requests) is the plugin class named by
`ModelSpec.plugin`, an implementation of ml/model_plugin.py `ModelPlugin` (ML environment only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# A model name is a Seldon resource prefix (`<name>-challenger`), an MLflow registered-model name, an
# S3 prefix and a config key (`mlplatform:models.<name>`): lower-case letters and digits only.
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,29}$")
DOTTED_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")


class SpecError(ValueError):
    """A model specification is inconsistent; the message names the model and the field."""


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one model replica inside the model server (Kubernetes quantities)."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    def __post_init__(self) -> None:
        for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            if not QUANTITY_RE.match(getattr(self, name)):
                raise SpecError(f"resources.{name} must be a Kubernetes quantity, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Serving:
    """How the model is served on the cluster.

    `min_replicas` / `max_replicas` are the defaults of `mlplatform:models.<name>.minReplicas` /
    `maxReplicas`; the Seldon `mlserver` Server is sized from the configured values of every enabled
    model (infra/workloads/seldon.py). `resources`, when given, is what one replica of this model adds
    to the server container's requests and limits; None: the model fits in the server's default
    container resources (the `mlserver` ServerConfig of the Seldon setup chart).
    """

    min_replicas: int = 1
    max_replicas: int = 2
    resources: Resources | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise SpecError(f"serving needs 0 <= min_replicas <= max_replicas, got {self.min_replicas}, "
                            f"{self.max_replicas}")


@dataclass(frozen=True)
class Features:
    """The model's Feast objects. `module` defines `definitions(parquet_dir) -> list` (entities,
    sources, feature views) and `write_parquet(data_dir, parquet_dir) -> {view: path}`; the cluster's
    `feast apply` Job and the local platform both import it. `entities` and `feature_views` name what
    `definitions` returns (documentation, and a check in the model's tests). `every_request`: the
    runtime reads the online store for every request (False: only for some request forms, e.g. an
    entity id instead of the inputs themselves); capacity planning sizes Redis from it."""

    module: str
    entities: tuple[str, ...]
    feature_views: tuple[str, ...]
    every_request: bool = True

    def __post_init__(self) -> None:
        if not DOTTED_RE.match(self.module):
            raise SpecError(f"features.module must be a dotted module path, got {self.module!r}")
        if not self.feature_views:
            raise SpecError("features must name at least one feature view (use features=None for none)")


@dataclass(frozen=True)
class Stream:
    """A Kafka topic the model's online features are computed from, and the module that consumes it
    (`python -m <ingestor>`, the feast-stream-ingestor Deployment of infra/workloads/feature_store.py)."""

    topic: str
    ingestor: str
    # The Flink job computing the same online features with event time (`python -m <job>` in the
    # streaming-features FlinkDeployment, infra/workloads/flink.py); None: the ingestor only.
    job: str | None = None

    def __post_init__(self) -> None:
        if not TOPIC_RE.match(self.topic):
            raise SpecError(f"stream.topic is not a valid Kafka topic name: {self.topic!r}")
        if not DOTTED_RE.match(self.ingestor):
            raise SpecError(f"stream.ingestor must be a dotted module path, got {self.ingestor!r}")
        if self.job is not None and not DOTTED_RE.match(self.job):
            raise SpecError(f"stream.job must be a dotted module path, got {self.job!r}")


@dataclass(frozen=True)
class DashboardPanel:
    """A time-series panel the model adds to the Business dashboard (infra/workloads/dashboards).

    `summary` is the panel's few words in the dashboard's description ("approval rate"). Every metric
    the expression queries must be listed in contracts/metrics_catalog.py.
    """

    title: str
    expr: str
    legend: str
    unit: str
    summary: str


@dataclass(frozen=True)
class ModelSpec:
    """One model, as the platform sees it. Field by field:

    name            registry and config key, Seldon/MLflow/S3 name (`NAME_RE`)
    description     one line, the description of `mlplatform:models.<name>` in docs/CONFIG.md
    intended_use    what the model is for and what it must not be used for
    runtime         class path of the MLServer runtime (written into every `model-settings.json`)
    plugin          class path of the model's `ml.model_plugin.ModelPlugin` implementation
    quality_gates   production floors: the defaults of `mlplatform:models.<name>.qualityGates`
    sample_gates    floors on the product's generated sample data (`mlplat local up` without --data)
    metrics         the held-out metrics the model's evaluation produces: the only names a quality gate
                    may use (`mlplat validate-config` checks the stack's gates against them); empty: not
                    declared (a plugin's gates are then checked only when it trains)
    features        Feast objects for online features, or None when the model reads none
    stream          Kafka topic + ingestor when online features are computed from a stream
    serving         replica defaults and per-replica resources (Seldon server sizing)
    smoke_request   a fixed V2 request body for the local smoke test; None: the plugin's
                    `smoke_request` builds one from the data the model was trained on
    business_panels panels for the Business dashboard (model-specific business metrics)
    explainer       class path of an MLServer runtime that explains the model's decisions, served beside it
                    as the V2 model `<name>-explainer` from the same artifact; None: no explanations
    """

    name: str
    description: str
    intended_use: str
    runtime: str
    plugin: str
    quality_gates: Mapping[str, float]
    sample_gates: Mapping[str, float]
    features: Features | None = None
    stream: Stream | None = None
    serving: Serving = field(default_factory=Serving)
    smoke_request: Mapping[str, Any] | None = None
    business_panels: tuple[DashboardPanel, ...] = ()
    metrics: tuple[str, ...] = ()
    explainer: str | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise SpecError(f"model name {self.name!r} must match {NAME_RE.pattern} (lower-case letters and digits)")
        for attr in ("runtime", "plugin", *(("explainer",) if self.explainer is not None else ())):
            if not DOTTED_RE.match(getattr(self, attr)):
                raise SpecError(f"model {self.name!r}: {attr} must be a dotted class path, got {getattr(self, attr)!r}")
        if not self.description.strip():
            raise SpecError(f"model {self.name!r}: description is empty")
        for attr in ("quality_gates", "sample_gates"):
            gates = getattr(self, attr)
            if not all(isinstance(k, str) and isinstance(v, int | float) for k, v in gates.items()):
                raise SpecError(f"model {self.name!r}: {attr} must map metric names to numbers, got {gates!r}")
            object.__setattr__(self, attr, _frozen_mapping({k: float(v) for k, v in gates.items()}))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if not all(isinstance(m, str) and m for m in self.metrics):
            raise SpecError(f"model {self.name!r}: metrics must be metric names, got {self.metrics!r}")
        for attr in ("quality_gates", "sample_gates"):
            unknown = self.unknown_metrics(getattr(self, attr))
            if unknown:
                raise SpecError(f"model {self.name!r}: {attr} name metrics its evaluation does not produce: "
                                f"{', '.join(unknown)} (metrics: {', '.join(self.metrics)})")
        if self.smoke_request is not None:
            if not isinstance(self.smoke_request.get("inputs"), list):
                raise SpecError(f"model {self.name!r}: smoke_request must be a V2 body with an `inputs` list")
            object.__setattr__(self, "smoke_request", _frozen_mapping(self.smoke_request))
        object.__setattr__(self, "business_panels", tuple(self.business_panels))

    @property
    def explainer_name(self) -> str | None:
        """The served name of the explainer (`<name>-explainer`), or None when the model has none."""
        return f"{self.name}-explainer" if self.explainer is not None else None

    def unknown_metrics(self, gates: Mapping[str, float]) -> list[str]:
        """Gate names that are not among the metrics the evaluation produces (none when undeclared)."""
        if not self.metrics:
            return []
        return sorted(set(gates) - set(self.metrics))
