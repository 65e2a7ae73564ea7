"""Registration and gating in MLflow: the model-independent half of training.

Each model's `train.py` loads its data, splits, fits, evaluates on held-out rows and writes the
serving artifact directory (ml/training/outputs.py `TrainOutput`). `register` then records the run and
registers the version as `challenger`; it becomes `champion` only if every quality gate passes. The gate
result is logged on the run (metrics `gate.<m>.threshold`, tags `gate.<m>` = pass/fail, `gate.passed`)
and on the model version (tags); so are the training-data validations (pandera) and the model card
(ml/training/card.py). Publishing a registered version to a serving slot is ml/training/publish.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow import MlflowClient

from contracts.governance import GATES, PENDING_APPROVAL, VALIDATION_PASSED
from ml.training import card as model_card
from ml.training.gates import check_gates, load_gates
from ml.training.outputs import RegistrationResult, TrainOutput
from ml.training.tracking import (
    ARTIFACT_PATH,
    CHALLENGER,
    CHAMPION,
    default_tracking_uri,
    ensure_experiment,
    mlflow_key,
    register_version,
)

if TYPE_CHECKING:
    from ml.datasets.content import DatasetVersion
    from ml.training.validation import ValidationResult

log = logging.getLogger(__name__)


def register(
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
    dataset: DatasetVersion | None = None,
) -> RegistrationResult:
    """Log params/metrics/artifact to MLflow, register a version, set `challenger`, and `champion` if
    gated in and the promotion policy needs nothing more (`gatesAndApproval`: an approval promotes it).
    The data validations made while training and the model card are logged on the same run.

    `promote=False` (the training pipeline's `register` step): record the gate result but set no
    `champion`; the pipeline's `gate` and `publish` steps decide. `tags` go on the run and the version.
    `dataset`: the exact version trained on, logged as the run's MLflow dataset input and in the card."""
    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    gates = load_gates(out.name) if gates is None else gates
    gate = check_gates(out.metrics, gates)
    exp_id = ensure_experiment(client, experiment or f"mlplat-{out.name}", uri)
    tags = {**(tags or {}), **(model_card.dataset_tags(dataset) if dataset is not None else {})}

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
        if dataset is not None:
            model_card.log_dataset(dataset)
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
    result = RegistrationResult(run_id, version, gate, promote, uri, promotion)
    result.card = model_card.build(out, result, data_dir=data_dir, validation=validation, dataset=dataset)
    model_card.log_card(client, run_id, result.card)
    return result
