"""The behaviour interface a model package implements: `ModelPlugin`.

A model is two things: its specification (contracts/models.py `ModelSpec`, data only, declared in
`<package>/spec.py` and listed by contracts/model_registry.py) and this plugin, the class named by
`ModelSpec.plugin`, which the ML-side consumers call instead of importing model modules by name:
the local platform (sample data, data check, training, Feast, smoke request), `mlplat model
train|evaluate` and `mlplat bench models`.

Required: `generate_sample`, `check_data`, `train`, `evaluate`, `sample_requests`. The Feast methods
use the module `ModelSpec.features` names (the same module the cluster's `feast apply` Job imports),
and `smoke_request` uses `ModelSpec.smoke_request` or the first of `sample_requests`; override them
when a model needs more.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from contracts import model_registry
from contracts.models import ModelSpec

if TYPE_CHECKING:
    from ml.training.outputs import TrainOutput


class ModelPlugin(ABC):
    """One model's behaviour. Instances are made by `load_plugin` with the model's spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    # ---- data ------------------------------------------------------------------------------------

    @abstractmethod
    def generate_sample(self, out_dir: Path, seed: int = 0) -> None:
        """Write small synthetic data with the real files' names and schemas into `out_dir`. The
        directory is shared with the other models, so use file names of your own."""

    @abstractmethod
    def check_data(self, data_dir: Path) -> str:
        """Load the model's files in `data_dir` through its data contract; raise
        `ml.data.contract.DataContractError` naming file, column and row on broken input. Returns
        a short description for progress output (e.g. "10,000 rows")."""

    # ---- training --------------------------------------------------------------------------------

    @abstractmethod
    def train(self, data_dir: Path, out_dir: Path, *, params: dict[str, Any] | None = None, seed: int = 0,
              quick: bool = False) -> TrainOutput:
        """Fit on `data_dir`, measure on held-out rows, write the serving artifact into `out_dir`
        (including `mlplat-model.json`, ml/training/outputs.py `write_metadata`). `quick` skips work
        that only feeds quality reports (baselines), not the artifact."""

    @abstractmethod
    def evaluate(self, model_dir: Path, data_file: Path, *, seed: int = 0) -> dict[str, float]:
        """Metrics of the artifact in `model_dir` on one file with the schema of a dataset file."""

    # ---- model card (ml/training/card.py) -----------------------------------------------------------

    #: How the held-out metrics were measured (split, what is held out, what is chosen on training data).
    evaluation_protocol: str = "metrics measured on rows held out from training (see the model's pipeline.py)"
    #: What the model is known not to do well, or not to be used for (beyond `ModelSpec.intended_use`).
    limitations: tuple[str, ...] = ()

    def data_files(self, data_dir: Path) -> list[Path]:
        """The files of `data_dir` that training reads (the card lists them with their SHA-256)."""
        return []

    def serving_schema(self) -> Any:
        """The pandera schema of the sampled serving inputs (monitored columns + `score`), run by the
        drift report on the serving window; None: every monitored column must be a finite number."""
        return None

    def feature_names(self, model_dir: Path) -> list[str]:
        """The model's inputs, for the card; default: the monitored inputs of the drift reference."""
        import json

        ref = Path(model_dir) / "reference.json"
        if not ref.is_file():
            return []
        return [f for f in json.loads(ref.read_text()).get("features", {}) if f != "score"]

    # ---- serving ---------------------------------------------------------------------------------

    @abstractmethod
    def sample_requests(self, data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
        """V2 inference request bodies built from the data (benchmarks, smoke test)."""

    def smoke_request(self, data_dir: Path, model_dir: Path | None, online_store: bool) -> dict[str, Any]:
        """The one request the local platform's smoke test sends. `online_store`: a Redis online store
        is materialized (`mlplat local up --redis`); `model_dir` is None when the artifact could not be
        fetched."""
        if self.spec.smoke_request is not None:
            return dict(self.spec.smoke_request)
        if model_dir is None:
            raise RuntimeError(f"the {self.name} artifact could not be fetched from the registry")
        bodies = self.sample_requests(data_dir, model_dir, n=1)
        if not bodies:
            raise RuntimeError(f"{self.name}: sample_requests returned no request for {data_dir}")
        return bodies[0]

    def bare_onnx_requests(self, data_dir: Path, model_dir: Path, n: int = 200,
                           seed: int = 0) -> list[dict[str, Any]] | None:
        """Bodies for ml/serving/bare.py (the artifact's `model.onnx` alone, a throughput baseline in
        `mlplat bench models`), or None when the artifact has no ONNX model."""
        return None

    # ---- features --------------------------------------------------------------------------------

    def features_module(self) -> ModuleType | None:
        features = self.spec.features
        return None if features is None else importlib.import_module(features.module)

    def write_feature_data(self, data_dir: Path, parquet_dir: Path) -> dict[str, Path]:
        """Offline-store Parquet files derived from the model's data files: feature view -> path."""
        module = self.features_module()
        return {} if module is None else module.write_parquet(Path(data_dir), Path(parquet_dir))

    def feature_definitions(self, parquet_dir: Path) -> list[Any]:
        """Feast entities, sources and feature views over the files of `write_feature_data`."""
        module = self.features_module()
        return [] if module is None else list(module.definitions(Path(parquet_dir)))

    def spark_feature_views(self, spark: Any, reader: Any) -> dict[str, Any]:
        """The batch feature views computed on Spark (ml/data/spark_features.py): view -> Spark DataFrame with
        the columns of `write_feature_data`'s file, from `views(spark, reader)` of the module the features
        module names in `SPARK_VIEWS`; {} when the model has none. `reader` reads the model's data files
        (`CsvReader`)."""
        module = self.features_module()
        spark_module = getattr(module, "SPARK_VIEWS", None) if module is not None else None
        if spark_module is None:
            return {}
        return dict(importlib.import_module(spark_module).views(spark, reader))

    # ---- training pipeline (ml/pipelines/) ---------------------------------------------------------

    #: The pipeline's `train` step asks for one GPU and runs on the GPU node group (else: general nodes).
    train_on_gpu: bool = False

    def read_features(self, store: Any, data_dir: Path, out_dir: Path) -> str:
        """The pipeline's `read-features` step: write into `out_dir` the files `train` reads, with the
        stored feature columns read back from the Feast offline store (`store`, a `feast.FeatureStore`, or
        None when the model has no features) through `get_historical_features`. Default: the model's data
        files as they are (a model without stored features reads its source directly). Returns a short
        description for the run's output."""
        import shutil

        src = Path(data_dir)
        files = self.data_files(src) or sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, Path(out_dir) / path.name)
        return f"source files as they are: {', '.join(p.name for p in files)}"


def _import_class(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


_LOADED: dict[tuple[str, str], ModelPlugin] = {}


def _plugin(spec: ModelSpec) -> ModelPlugin:
    key = (spec.name, spec.plugin)
    if key not in _LOADED:
        _LOADED[key] = _make(spec)
    return _LOADED[key]


def _make(spec: ModelSpec) -> ModelPlugin:
    try:
        cls = _import_class(spec.plugin)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"model {spec.name!r}: plugin class {spec.plugin} cannot be loaded ({exc})") from exc
    if not (isinstance(cls, type) and issubclass(cls, ModelPlugin)):
        raise TypeError(f"model {spec.name!r}: {spec.plugin} must be a subclass of ml.model_plugin.ModelPlugin")
    return cls(spec)


def load_plugin(name: str) -> ModelPlugin:
    """The plugin of registered model `name` (ValueError listing the registered models otherwise)."""
    return _plugin(model_registry.get(name))


def plugins() -> list[ModelPlugin]:
    """Every registered model's plugin, in registry order."""
    return [_plugin(spec) for spec in model_registry.specs()]
