"""The deploy tree: the files in git that say which models serve in which environment (standard library only).

Argo CD owns the model deployments on the cluster: one Application per model and environment applies
the folder `<environment>/<model>/` of the deploy repository (infra/workloads/gitops.py). This module
renders those folders; the cluster side, the promotion code that commits a release (ml/delivery/gitops.py)
and the local platform all call it, so every consumer sees the same objects for the same inputs.

Signature, for callers:

    render(environment, bucket, models) -> dict[str, str]
        environment: "dev" | "staging" | "prod" (any DNS-label-like name is accepted)
        bucket:      the models bucket the slots live in (stack output `buckets.models`; locally the
                     local platform's bucket name)
        models:      one `ModelRelease` per enabled model (name, replicas, experiment weights and the
                     released registry version per slot, when known)
        returns:     path relative to the repository's deploy path -> file text:
                     "<environment>/<model>/model-champion.yaml", ".../model-challenger.yaml",
                     ".../experiment.yaml" per model, ".../model-explainer.yaml" for a model with an explainer

    objects(environment, bucket, models) -> dict[str, dict]   the same, as Kubernetes objects

Pure and deterministic: the same inputs give byte-identical files (sorted keys, no time stamps), so a
release that changes nothing changes no file and makes no commit.

Per model the folder holds what the Pulumi program declared before Argo CD took the model deployments
over, field for field (tests/infra/test_deploy_tree.py compares them):
- two Seldon `Model`s, `<name>-champion` and `<name>-challenger`, reading, for a slot with a released version,
  that version's immutable prefix `s3://<bucket>/<name>/versions/<version>/`, else the slot prefix
  `s3://<bucket>/<name>/<slot>/` (contracts/model_slots.py);
- the `Experiment` `<name>-experiment`, splitting the champion's traffic by the configured weights;
- for a model with an explainer, the Model `<name>-explainer`, reading the `explainer/` folder of the champion's prefix.
Two differences, both deliberate: `app.kubernetes.io/managed-by` says `argocd` (`managed_by`), and a slot whose released
version is known carries it as the Model parameter `registry-version` (the parameter the model runbooks
read, runbooks/kube.py) and reads that version's immutable prefix: a new version is a changed Model spec, which is
what makes Seldon load it, and nothing but a change of the tree's branch changes what a Model loads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.cluster import MODEL_SERVER, SELDON_NAMESPACE
from contracts.model_slots import EXPLAINER_DIR, SLOTS, artifact_uri, check_slot, explainer_uri, version_uri

SELDON_API = "mlops.seldon.io/v1alpha1"
SELDON_GROUP = SELDON_API.split("/", 1)[0]
NAMESPACE = SELDON_NAMESPACE
SERVER_NAME = MODEL_SERVER.name
# `mlserver` is the MLServer ServerConfig's capability; `python` marks a custom Python runtime
# (our `ml.models.<name>.runtime` classes, named in each artifact's model-settings.json).
REQUIREMENTS = ("mlserver", "python")
RCLONE_SECRET = "seldon-rclone-s3"
# The Model parameter that names the registry version a slot holds (runbooks/kube.py reads it).
VERSION_PARAMETER = "registry-version"
# What the deploy tree holds: the Argo CD project of the model deployments admits these kinds only.
KINDS = ("Model", "Experiment")
MANAGED_BY = "argocd"
PART_OF = "mlplatform"
MODEL_LABEL = "mlplatform.io/model"
EXPERIMENT_FILE = "experiment.yaml"
EXPLAINER_FILE = "model-explainer.yaml"
# The Experiment fields a rollout, shadow, A/B test or bandit changes on the live object (ml/delivery/seldon.py):
# Argo CD ignores them (infra/workloads/gitops.py), so its self-heal does not undo a step; the final
# promotion is a change of the tree.
EXPERIMENT_RUNTIME_FIELDS = (".spec.candidates[].weight", ".spec.mirror")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_VERSION = re.compile(r"^[1-9][0-9]*$")


class DeployTreeError(ValueError):
    """An input the deploy tree cannot be rendered from; the message names it."""


@dataclass(frozen=True)
class ModelRelease:
    """One model in one environment: its serving settings (stack config) and released versions."""

    name: str
    replicas: int
    champion_weight: int = 100
    challenger_weight: int = 0
    versions: Mapping[str, str] = field(default_factory=dict)
    """slot -> the registry version released to it ("3"); a slot absent here has no recorded release."""
    explainer: str | None = None
    """The served name of the model's explainer (`ModelSpec.explainer_name`), None when it has none: a Model
    of its own that explains the champion, from the champion slot's `explainer/` folder."""

    def resource(self, slot: str) -> str:
        return f"{self.name}-{check_slot(slot)}"

    @property
    def experiment(self) -> str:
        return f"{self.name}-experiment"


def model_file(slot: str) -> str:
    return f"model-{check_slot(slot)}.yaml"


def model_dir(environment: str, model: str) -> str:
    """The folder of one model in one environment, relative to the deploy path (an Application's path)."""
    _check_name("environment", environment)
    _check_name("model", model)
    return f"{environment}/{model}"


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise DeployTreeError(f"{what} {value!r} is not a lower-case DNS label (a-z, 0-9, '-', <= 40 characters)")


def _check(model: ModelRelease) -> None:
    _check_name("model", model.name)
    if not isinstance(model.replicas, int) or isinstance(model.replicas, bool) or not 0 <= model.replicas <= 100:
        raise DeployTreeError(f"{model.name}: replicas must be an integer 0..100, got {model.replicas!r}")
    for what, weight in (("champion_weight", model.champion_weight), ("challenger_weight", model.challenger_weight)):
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise DeployTreeError(f"{model.name}: {what} must be an integer 0..100, got {weight!r}")
    for slot, version in model.versions.items():
        if slot not in SLOTS:
            raise DeployTreeError(f"{model.name}: unknown slot {slot!r} in versions; expected {', '.join(SLOTS)}")
        if not isinstance(version, str) or not _VERSION.match(version):
            raise DeployTreeError(f"{model.name}: the {slot} version must be a registry version number "
                                  f"('1', '2', ...), got {version!r}")


def _labels(model: str, component: str, managed_by: str) -> dict[str, str]:
    return {"app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": managed_by,
            "app.kubernetes.io/name": model, "app.kubernetes.io/part-of": PART_OF, MODEL_LABEL: model}


def model_metadata(model: ModelRelease, slot: str, managed_by: str = MANAGED_BY) -> dict[str, Any]:
    """The metadata of a slot's Model (it does not depend on the bucket)."""
    return {"name": model.resource(slot), "namespace": NAMESPACE, "labels": _labels(model.name, slot, managed_by)}


def model_object(model: ModelRelease, slot: str, bucket: str, managed_by: str = MANAGED_BY) -> dict[str, Any]:
    """The Seldon Model of one slot."""
    try:
        uri = _storage_uri(model, slot, bucket)
    except ValueError as exc:
        raise DeployTreeError(str(exc)) from exc
    spec: dict[str, Any] = {
        "storageUri": uri,
        "secretName": RCLONE_SECRET,
        "requirements": list(REQUIREMENTS),
        "server": SERVER_NAME,
        # Seldon Core 2.10.2 disables native model autoscaling in its scheduler, so a Model's maxReplicas
        # bounds nothing there: the model runs `minReplicas` replicas, set explicitly.
        "replicas": model.replicas,
        "minReplicas": model.replicas,
    }
    version = model.versions.get(slot)
    if version is not None:
        spec["parameters"] = [{"name": VERSION_PARAMETER, "value": version}]
    return {"apiVersion": SELDON_API, "kind": "Model",
            "metadata": model_metadata(model, slot, managed_by), "spec": spec}


def _storage_uri(model: ModelRelease, slot: str, bucket: str) -> str:
    """A slot with a released version reads that version's immutable prefix, so the tree alone decides what
    serves (a reviewed change that is not merged yet changes nothing); a slot without one reads the mutable
    slot prefix (a program that applies the objects itself, GitOps off, and touches the Model on release)."""
    version = model.versions.get(slot)
    return artifact_uri(bucket, model.name, slot) if version is None else version_uri(bucket, model.name, version)


def explainer_object(model: ModelRelease, bucket: str, managed_by: str = MANAGED_BY) -> dict[str, Any]:
    """The explainer's Model: the champion's settings and released version, its own folder of the slot (the
    publication writes the artifact there again with the explainer's runtime), on the same server."""
    champion = model_object(model, "champion", bucket, managed_by)
    try:
        uri = (explainer_uri(bucket, model.name, "champion") if "champion" not in model.versions
               else f"{_storage_uri(model, 'champion', bucket)}{EXPLAINER_DIR}/")
    except ValueError as exc:
        raise DeployTreeError(str(exc)) from exc
    return {**champion, "metadata": explainer_metadata(model, managed_by),
            "spec": {**champion["spec"], "storageUri": uri}}


def explainer_metadata(model: ModelRelease, managed_by: str = MANAGED_BY) -> dict[str, Any]:
    """The metadata of the explainer's Model (it does not depend on the bucket)."""
    if model.explainer is None:
        raise DeployTreeError(f"{model.name} has no explainer")
    _check_name("explainer", model.explainer)
    return {"name": model.explainer, "namespace": NAMESPACE, "labels": _labels(model.name, "explainer", managed_by)}


def experiment_object(model: ModelRelease, managed_by: str = MANAGED_BY) -> dict[str, Any]:
    """The Experiment: requests for `<name>-champion` are split by the weights while it exists."""
    champion = model.resource("champion")
    return {"apiVersion": SELDON_API, "kind": "Experiment",
            "metadata": {"name": model.experiment, "namespace": NAMESPACE,
                         "labels": _labels(model.name, "experiment", managed_by)},
            "spec": {"default": champion, "resourceType": "model",
                     "candidates": [{"name": champion, "weight": model.champion_weight},
                                    {"name": model.resource("challenger"), "weight": model.challenger_weight}]}}


def objects(environment: str, bucket: str, models: Sequence[ModelRelease],
            managed_by: str = MANAGED_BY) -> dict[str, dict[str, Any]]:
    """Every object of the environment's tree: path relative to the deploy path -> object. `managed_by`: the
    `app.kubernetes.io/managed-by` label (`pulumi` where the program applies the objects, Argo CD being off)."""
    seen: set[str] = set()
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        _check(model)
        if model.name in seen:
            raise DeployTreeError(f"model {model.name!r} is listed twice")
        seen.add(model.name)
        folder = model_dir(environment, model.name)
        for slot in SLOTS:
            out[f"{folder}/{model_file(slot)}"] = model_object(model, slot, bucket, managed_by)
        out[f"{folder}/{EXPERIMENT_FILE}"] = experiment_object(model, managed_by)
        if model.explainer is not None:
            out[f"{folder}/{EXPLAINER_FILE}"] = explainer_object(model, bucket, managed_by)
    return dict(sorted(out.items()))


def render(environment: str, bucket: str, models: Sequence[ModelRelease]) -> dict[str, str]:
    """Every file of the environment's tree: path relative to the deploy path -> YAML text."""
    return {path: to_yaml(obj, header=f"{environment}: {obj['kind']} {obj['metadata']['name']}")
            for path, obj in objects(environment, bucket, models).items()}


_PLAIN_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]*$")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar: never read as a number or bool
    raise DeployTreeError(f"cannot write {type(value).__name__} {value!r} to the deploy tree")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        out = []
        for k in sorted(value):
            v = value[k]
            if isinstance(v, Mapping | list) and v:
                out.append(f"{pad}{_key(k)}:")
                out.extend(_lines(v, indent + (2 if isinstance(v, Mapping) else 0)))
            else:
                out.append(f"{pad}{_key(k)}: {_inline(v)}")
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if isinstance(item, Mapping | list) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(obj: Mapping[str, Any], header: str | None = None) -> str:
    """A block-style YAML document of JSON-like data: keys sorted, every string double-quoted."""
    comment = [f"# {line}" for line in (header or "").splitlines()]
    note = "# Rendered by contracts/deploy_tree.py; change the stack config or release a version instead."
    return "\n".join([*comment, note, *_lines(obj, 0)]) + "\n"
