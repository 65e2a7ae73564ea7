"""Training pipelines: the names the ML side (ml/pipelines/), the cluster side (infra/workloads/)
and the local platform must spell the same way. Standard library only.

One Kubeflow Pipelines (KFP v2) pipeline per registered model, `<model>-training`, compiled from
ml/pipelines/definition.py into `<model package>/training_pipeline.yaml` (committed next to the model's
`spec.py`, so the IaC environment, which has no kfp, can ship the IR to the cluster). Its steps and
run parameters are listed here; the cluster's bootstrap and recurring runs and the drift-retrain
receiver pass exactly these parameters.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

IR_FILE = "training_pipeline.yaml"  # the compiled IR, next to the model's spec module
SAMPLE_DATA = "sample"  # `data_uri` value: the pipeline's first step generates the product's sample data
EXPERIMENT = "mlplat-training"  # KFP experiment of every run the platform starts

# The steps in order (component names in the IR). `gate` decides; `publish` runs only when it passed.
STEPS = ("prepare-data", "read-features", "validate-data", "train", "evaluate", "register", "gate", "publish")

# Run parameters (name -> what it is). Every one has a default in the IR; empty strings mean "not used".
PARAMETERS: dict[str, str] = {
    "data_uri": f"`{SAMPLE_DATA}` (generate the sample data in the first step), a directory or an s3:// prefix "
                "holding the model's data files",
    "seed": "random seed of the sample data and of the training split",
    "offline_uri": "root of the Feast offline store (s3://<feast bucket>/offline): the first step writes the "
                   "model's feature Parquet files there and `read-features` reads them back",
    "feast_repo": "a Feast repository (feature_store.yaml + registry) to read features from (local platform)",
    "gates": "JSON object of metric floors; empty: the model's sample-data floors on generated data, else the "
             "schema's default quality gates",
    "promotion": "governance.promotion of the stack: `gates` promotes a gated-in version, `gatesAndApproval` "
                 "leaves it for `mlplat model approve`",
    "tracking_uri": "MLflow tracking URI (empty: $MLFLOW_TRACKING_URI)",
    "slot_bucket": "models bucket of the Seldon slots (cluster)",
    "slot_dir": "directory holding the local model slots (local platform)",
    "serving_url": "MLServer to reload after publishing (local platform)",
    "seldon_namespace": "namespace of the Seldon Models to touch after publishing (cluster)",
    "trigger": "why the run started: bootstrap, schedule, drift or manual (tag on the MLflow run and version)",
    "version_tags": "JSON object of extra tags on the registered version",
    "quick": "skip work that only feeds quality reports (baselines)",
    "deploy": "JSON of the deploy tree the publish step writes (ml/delivery/tree_publish.py deploy_parameter: "
              "repository, branch, folder, promotion, environment, bucket, models); empty: it writes none",
    "deploy_secret": "Secret mounted into the publish step's pod with the deploy repository's credentials "
                     "(workloads.gitops.credentialsSecret; cluster)",
}
TRIGGERS = ("bootstrap", "schedule", "drift", "manual")
# The deploy repository's credentials in the publish step's pod (a Secret volume, ml/pipelines/definition.py) and
# the Secret's name when the stack names none (the volume is optional: a missing Secret mounts nothing).
DEPLOY_CREDENTIALS_DIR = "/var/run/mlplat/deploy-git"
DEPLOY_SECRET_DEFAULT = "mlplat-deploy-git"
TRIGGER_TAG = "mlplat.trigger"  # MLflow run and model-version tag: TRIGGERS
PIPELINE_RUN_TAG = "mlplat.pipeline.run"  # MLflow run tag: the KFP run (or local run) that trained it
GATES_SOURCE_TAG = "mlplat.gates.source"  # `version_tags` key: where the run's `gates` come from (for the output)


def pipeline_name(model: str) -> str:
    return f"{model}-training"


def ir_path(spec_module: str) -> Path:
    """The committed IR of the model whose spec lives in `spec_module` (found without importing it)."""
    found = importlib.util.find_spec(spec_module)
    if found is None or found.origin is None:
        raise FileNotFoundError(f"spec module {spec_module!r} cannot be found")
    return Path(found.origin).with_name(IR_FILE)


def cron_to_kfp(schedule: str) -> str:
    """A five-field cron schedule as KFP's six-field one (KFP's first field is seconds)."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"expected a five-field cron schedule, got {schedule!r}")
    return " ".join(["0", *fields])


# ---- retraining on drift ------------------------------------------------------------------------------
# Per registered model, one alert: the PSI of one of its monitored inputs (or its score) against the
# training reference stayed above PSI_MAX. Alertmanager routes `action="retrain"` to the retrain
# receiver (ml/pipelines/retrain.py), which starts a run of the model's pipeline (trigger `drift`).
RETRAIN_ALERT = "MLPlatRetrainOnDrift"
ACTION_LABEL, RETRAIN_ACTION = "action", "retrain"
PSI_MAX = 0.2
DRIFT_METRIC = "mlplat_model_drift_psi"
RETRAIN_RUNBOOK = "model-drift.md"


def retrain_rule_groups(models: tuple[str, ...] | list[str], runbook_base_url: str, for_: str = "30m",
                        interval: str = "1m") -> list[dict[str, object]]:
    """PrometheusRule `spec.groups`: one retrain alert per model. The runtime names the model `<name>` locally
    and `<name>-<slot>` (Seldon, plus a `_<n>` suffix per loaded version) on the cluster; the alert's own
    `model` label is the registered name either way."""
    groups = []
    for model in models:
        selector = f'{DRIFT_METRIC}{{model=~"{model}([-_].*)?"}}'
        groups.append({"name": f"mlplatform-retrain-{model}", "interval": interval, "rules": [{
            "alert": RETRAIN_ALERT, "expr": f"max({selector}) > {PSI_MAX}", "for": for_,
            "labels": {"severity": "warning", "platform": "mlplatform", ACTION_LABEL: RETRAIN_ACTION, "model": model},
            "annotations": {"summary": f"inputs of {model} drifted (PSI {{{{ $value }}}} > {PSI_MAX}): retraining "
                                       f"{pipeline_name(model)}",
                            "runbook_url": f"{runbook_base_url}runbooks/{RETRAIN_RUNBOOK}"},
        }]})
    return groups
