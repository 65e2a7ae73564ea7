"""Where each model's Seldon slots read their artifacts: pure names and files, no pulumi.

The Pulumi program (infra/workloads/models_cluster.py) declares the Seldon Models from these, and the
publishing code (ml/training/publish.py, used by the model runbooks where pulumi is not
installed) writes the slots from them, so both sides agree by construction.
"""

from __future__ import annotations

from typing import Any

from contracts import model_registry

SLOTS = ("champion", "challenger")
RCLONE_REMOTE = "s3"  # must equal the storageUri scheme
MODEL_SETTINGS_FILE = "model-settings.json"
# A model with an explainer (ModelSpec.explainer) gets a second copy of its artifact in this folder of the
# slot, with the explainer's model-settings.json: the Seldon Model `<name>-explainer` loads that folder.
EXPLAINER_DIR = "explainer"


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise ValueError(f"unknown model slot {slot!r}; expected one of {', '.join(SLOTS)}")
    return slot


def slot_prefix(model: str, slot: str) -> str:
    """The object-key prefix of a slot inside the models bucket: `<model>/<slot>/`."""
    if not model or "/" in model:
        raise ValueError(f"model name must be a non-empty name without '/', got {model!r}")
    return f"{model}/{check_slot(slot)}/"


def artifact_uri(bucket: str, model: str, slot: str) -> str:
    """Where a promotion publishes `<model>`'s artifact for `slot` (docs/WORKLOADS.md)."""
    check_slot(slot)
    if not bucket or "/" in bucket:
        raise ValueError(f"models bucket must be a bare bucket name, got {bucket!r}")
    return f"{RCLONE_REMOTE}://{bucket}/{slot_prefix(model, slot)}"


# Every published version also gets a prefix of its own that is written once and never changed afterwards:
# `<model>/versions/<version>/`. The deploy tree's Models read it (contracts/deploy_tree.py), so a version's
# files can be uploaded before a reviewed change names them without changing what any Model loads: merging
# the change is the only switch. The slot prefixes above stay as the mutable "what the registry calls
# champion/challenger" copy that the runbooks and the local platform read.
VERSIONS_DIR = "versions"


def version_prefix(model: str, version: str) -> str:
    """The object-key prefix of one registry version's immutable copy: `<model>/versions/<version>/`."""
    if not model or "/" in model:
        raise ValueError(f"model name must be a non-empty name without '/', got {model!r}")
    text = str(version)
    if not text.isdigit() or int(text) < 1 or text != str(int(text)):
        raise ValueError(f"version must be a registry version number (1, 2, ...), got {version!r}")
    return f"{model}/{VERSIONS_DIR}/{text}/"


def version_uri(bucket: str, model: str, version: str) -> str:
    """The storageUri of a Model that serves `version` (the immutable per-version prefix)."""
    if not bucket or "/" in bucket:
        raise ValueError(f"models bucket must be a bare bucket name, got {bucket!r}")
    return f"{RCLONE_REMOTE}://{bucket}/{version_prefix(model, version)}"


def artifact_model_settings(model: str) -> dict[str, Any]:
    """The `model-settings.json` a promotion publishes next to the artifact files. No name (Seldon
    names the loaded model) and no `parameters.uri`: MLServer then loads from the folder Seldon's agent
    copied the prefix into, which is where the artifact files are."""
    names = model_registry.names()
    if model not in names:
        raise ValueError(f"unknown reference model {model!r}; expected one of {', '.join(names)}")
    # MLServer adaptive batching stays off (max_batch_size <= 1 disables it in MLServer 1.7.1
    # batching/hooks.py), pinned here so a server-wide MLSERVER_MODEL_MAX_BATCH_SIZE cannot switch it
    # on: the batcher concatenates requests, which merges several callers' inputs (e.g. readers'
    # histories) into one request and copies one batch's response parameters (e.g. `degraded`) to every
    # request in it; measurements in docs/BENCHMARKS.md ("gRPC and adaptive batching").
    return {"implementation": model_registry.get(model).runtime, "max_batch_size": 1, "max_batch_time": 0}


def explainer_model_settings(model: str) -> dict[str, Any] | None:
    """The `model-settings.json` of the slot's `explainer/` folder, or None when the model has no explainer."""
    settings = artifact_model_settings(model)
    explainer = model_registry.get(model).explainer
    return None if explainer is None else {**settings, "implementation": explainer}


def explainer_uri(bucket: str, model: str, slot: str) -> str:
    """The storageUri of the Seldon Model `<model>-explainer`: the slot's `explainer/` folder."""
    return f"{artifact_uri(bucket, model, slot)}{EXPLAINER_DIR}/"


def explainer_runtimes() -> dict[str, str]:
    """Served explainer name (`<model>-explainer`) -> class path of its runtime, for models that have one."""
    return {spec.explainer_name: spec.explainer for spec in model_registry.specs()
            if spec.explainer is not None and spec.explainer_name is not None}


def model_runtimes() -> dict[str, str]:
    """Registered model name -> class path of its MLServer runtime (contracts/model_registry.py)."""
    return {spec.name: spec.runtime for spec in model_registry.specs()}
