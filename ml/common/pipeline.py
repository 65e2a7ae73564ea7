"""The model-independent half of training: log to MLflow, register, gate, set aliases.

Each model's `pipeline.py` loads its data, splits, fits, evaluates on held-out rows and writes the
serving artifact directory (`TrainOutput`). `publish` then records the run and registers the
version as `challenger`; it becomes `champion` only if every quality gate passes. The gate result
is logged on the run (metrics `gate.<m>.threshold`, tags `gate.<m>` = pass/fail, `gate.passed`) and
on the model version (tags); so are the training-data validations (pandera) and the model card
(ml/common/card.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.governance import GATES, GATES_AND_APPROVAL, PENDING_APPROVAL, VALIDATION_PASSED
from ml.common.gates import GateResult, check_gates, load_gates
from ml.common.tracking import (
    ARTIFACT_PATH,
    CHALLENGER,
    CHAMPION,
    default_tracking_uri,
    ensure_experiment,
    mlflow_key,
    register_version,
)

if TYPE_CHECKING:
    from ml.common.validation import ValidationResult

log = logging.getLogger(__name__)
METADATA_FILE = "mlplat-model.json"


@dataclass
class TrainOutput:
    name: str  # a registered model (contracts/model_registry.py)
    model_dir: Path  # serving artifact: algorithm save dir + reference.json + mlplat-model.json
    params: dict[str, Any]
    metrics: dict[str, float]  # on held-out data
    info: dict[str, Any] = field(default_factory=dict)  # data sizes etc., logged as params
    # Held-out metrics per data segment (e.g. per source), when the data has segments: the model card.
    segments: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class PublishResult:
    run_id: str
    version: str
    gate: GateResult
    champion: bool
    tracking_uri: str
    promotion: str = GATES  # the stack's promotion policy (contracts/governance.py)
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def pending_approval(self) -> bool:
        return self.gate.passed and not self.champion and self.promotion == GATES_AND_APPROVAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "version": self.version,
            "aliases": [CHALLENGER, *([CHAMPION] if self.champion else [])],
            "gates_passed": self.gate.passed,
            "gates": self.gate.summary(),
            "promotion": self.promotion,
            "pending_approval": self.pending_approval,
            "tracking_uri": self.tracking_uri,
        }


def write_metadata(model_dir: Path, name: str, metrics: dict[str, float], params: dict[str, Any]) -> None:
    """`mlplat-model.json`: what the runtime and `mlplat model evaluate` need to know about the artifact."""
    doc = {"name": name, "format": 1, "metrics": metrics, "params": params}
    (Path(model_dir) / METADATA_FILE).write_text(json.dumps(doc, indent=1, default=str))


def read_metadata(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not an mlplat model artifact ({METADATA_FILE} missing)")
    return json.loads(path.read_text())


def publish(
    out: TrainOutput,
    tracking_uri: str | None = None,
    gates: dict[str, float] | None = None,
    experiment: str | None = None,
    *,
    promotion: str = GATES,
    data_dir: Path | None = None,
    validations: list[ValidationResult] | None = None,
    promote: bool = True,
    tags: dict[str, str] | None = None,
) -> PublishResult:
    """Log params/metrics/artifact to MLflow, register a version, set `challenger`, and `champion` if
    gated in and the promotion policy needs nothing more (`gatesAndApproval`: an approval promotes it).
    The data validations made while training and the model card are logged on the same run.

    `promote=False` (the training pipeline's `register` step): record the gate result but set no
    `champion`; the pipeline's `gate` and `publish` steps decide. `tags` go on the run and the version."""
    import mlflow
    from mlflow import MlflowClient

    from ml.common import card as model_card

    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    gates = load_gates(out.name) if gates is None else gates
    gate = check_gates(out.metrics, gates)
    exp_id = ensure_experiment(client, experiment or f"mlplat-{out.name}", uri)

    with mlflow.start_run(experiment_id=exp_id, run_name=f"train-{out.name}") as run:
        params = {**out.params, **{f"data.{k}": v for k, v in out.info.items()}}
        mlflow.log_params({mlflow_key(k): str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({mlflow_key(k): float(v) for k, v in out.metrics.items()})
        for check in gate.checks:
            key = mlflow_key(check.metric)
            mlflow.log_metric(f"gate.{key}.threshold", check.threshold)
            mlflow.set_tag(f"gate.{key}", "pass" if check.passed else "fail")
        mlflow.set_tags({"gate.passed": str(gate.passed).lower(), "gate.summary": gate.summary(),
                         "mlplat.model": out.name, "mlplat.promotion": promotion, **(tags or {})})
        validation = model_card.log_validations(validations or [])
        mlflow.log_artifacts(str(out.model_dir), artifact_path=ARTIFACT_PATH)
        source = f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
        run_id = run.info.run_id

    tags = {"gate.passed": str(gate.passed).lower(), "gate.summary": gate.summary(), "mlplat.promotion": promotion,
            **(tags or {})}
    if validation is not None:
        tags[VALIDATION_PASSED] = str(validation["passed"]).lower()
    promote = promote and gate.passed and promotion == GATES
    if gate.passed and promotion != GATES:
        tags[PENDING_APPROVAL] = "true"
    version = register_version(client, out.name, run_id, source, tags)
    client.set_registered_model_alias(out.name, CHALLENGER, version)
    if promote:
        client.set_registered_model_alias(out.name, CHAMPION, version)
        log.info("%s v%s promoted to champion (%s)", out.name, version, gate.summary())
    elif gate.passed and promotion == GATES:
        log.info("%s v%s registered as challenger; gates pass (%s), promotion is the caller's", out.name, version,
                 gate.summary())
    elif gate.passed:
        log.warning("%s v%s stays challenger until approved (%s): mlplat model approve %s %s --by WHO --reason ...",
                    out.name, version, promotion, out.name, version)
    else:
        log.warning("%s v%s stays challenger: quality gates failed (%s)", out.name, version, gate.summary())
    result = PublishResult(run_id, version, gate, promote, uri, promotion)
    result.card = model_card.build(out, result, data_dir=data_dir, validation=validation)
    model_card.log_card(client, run_id, result.card)
    return result
