"""Data and models of the local platform: sample data, schema checks, training, registration.

Everything model-specific is delegated to each model's plugin (ml/model_plugin.py `ModelPlugin`,
found through contracts/model_registry.py) and to ml/training/registration.py `register`, which registers the
version as `challenger` and promotes it to `champion` when its quality gates pass. This module adds
what only the local mode needs: a data fingerprint, so a second `up` on the same data reuses the
registered versions instead of retraining, and the choice of the alias to serve.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import model_registry
from ml.data.contract import DataContractError
from ml.model_plugin import load_plugin
from ml.training.gates import load_gates
from ml.training.tracking import CHALLENGER, CHAMPION

DATA_TAG = "mlplat.local.data"  # model-version tag: fingerprint of the data it was trained on
GATES_TAG = "mlplat.local.gates"  # model-version tag: which gate profile decided on champion
SAMPLE_SEED = 0
# On generated sample data (no --data) each model's `ModelSpec.sample_gates` decide on champion: the
# sample is synthetic and small, so the production floors of the stack config say nothing there.
# With --data the configured gates apply (`load_gates`, optionally from a stack file).


def generate_sample_data(out_dir: Path, models: tuple[str, ...], seed: int = SAMPLE_SEED) -> Path:
    """The product's synthetic data (shared datasets' file names and schemas) for `models`, once."""
    marker = out_dir / ".complete.json"
    want = {"models": sorted(models), "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for name in models:
        load_plugin(name).generate_sample(out_dir, seed=seed)
    marker.write_text(json.dumps(want))
    return out_dir


def validate_data(data_dir: Path, models: tuple[str, ...]) -> dict[str, str]:
    """Load each model's files through its data contract; raise DataContractError on the first problem.

    Returns a one-line description per model (rows loaded), for the progress output.
    """
    if not data_dir.is_dir():
        raise DataContractError(data_dir, "data directory does not exist")
    out = {}
    for name in models:
        out[name] = load_plugin(name).check_data(data_dir)
    return out


def fingerprint(data_dir: Path) -> str:
    """Cheap identity of a data directory: names, sizes and modification times of its files."""
    h = hashlib.sha256(str(data_dir.resolve()).encode())
    for path in sorted(p for p in data_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        st = path.stat()
        h.update(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


@dataclass
class ModelState:
    name: str
    version: str
    champion: bool
    alias: str  # the alias served: champion, or challenger when the gates failed
    gates: str
    metrics: dict[str, float] = field(default_factory=dict)
    trained: bool = False  # False: reused a version trained earlier on the same data
    seconds: float = 0.0
    data: str = ""  # the version's own data fingerprint tag (DATA_TAG); empty when it has none

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def registered(tracking_uri: str, name: str, data_fp: str) -> ModelState | None:
    """What serves `name` (champion, else the latest challenger) if that very version was trained on data
    `data_fp` (its own data tag, not another version's), else None: then `up` trains on this data."""
    state = serving_state(tracking_uri, name)
    if state is None or state.data != data_fp:
        return None
    return state


def serving_state(tracking_uri: str, name: str) -> ModelState | None:
    """The version that serves `name`: the champion, else the latest challenger (gates failed); None when
    the registry holds neither."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    serve, alias = None, CHAMPION
    for alias in (CHAMPION, CHALLENGER):
        try:
            serve = client.get_model_version_by_alias(name, alias)
            break
        except MlflowException:
            continue
    if serve is None:
        return None
    run = client.get_run(serve.run_id)
    return ModelState(
        name=name, version=str(serve.version), champion=alias == CHAMPION, alias=alias,
        gates=serve.tags.get("gate.summary", ""), metrics=dict(run.data.metrics), data=serve.tags.get(DATA_TAG, ""),
    )


def train(name: str, data_dir: Path, work_dir: Path) -> tuple[Any, float]:
    """Fit `name` with its own pipeline into `<work_dir>/<name>`; no MLflow needed yet (so this can
    overlap the tracking server's start). Returns the pipeline's TrainOutput and the seconds taken."""
    started = time.perf_counter()
    out_dir = work_dir / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    out = load_plugin(name).train(data_dir, out_dir)
    return out, time.perf_counter() - started


def gates_for(name: str, sample: bool, stack_file: Path | None = None) -> tuple[dict[str, float], str]:
    """(metric floors, profile name): the spec's sample-data floors on generated data, else the
    configured gates."""
    if sample:
        return dict(model_registry.get(name).sample_gates), "sample-data floors"

    return load_gates(name, stack_file), f"gates of {stack_file}" if stack_file else "stack default gates"


def register(out: Any, tracking_uri: str, data_fp: str, gates: dict[str, float], profile: str,
             seconds: float = 0.0) -> ModelState:
    """Publish a TrainOutput (challenger, champion if gated in), tag its data, return what to serve."""
    from ml.training.registration import register  # MLflow: start-up time of the CLI

    started = time.perf_counter()
    result = register(out, tracking_uri=tracking_uri, gates=gates)
    client = _client(tracking_uri)
    client.set_model_version_tag(out.name, result.version, DATA_TAG, data_fp)
    client.set_model_version_tag(out.name, result.version, GATES_TAG, profile)
    # The alias to serve: this version if gated in; else an earlier champion; else this challenger.
    state = serving_state(tracking_uri, out.name)
    if state is None:  # cannot happen unless the registry changed under us
        raise RuntimeError(f"model {out.name!r} v{result.version} is not visible in the registry after publishing")
    if state.version == result.version:
        state.metrics = {k: float(v) for k, v in out.metrics.items()}
        state.gates = result.gate.summary()
    state.trained = True
    state.seconds = seconds + time.perf_counter() - started
    return state
