"""The models on the cluster: what Pulumi owns of serving them (storage access, the Feast apply Job), and the
Seldon Models and Experiments themselves only where Argo CD does not deliver them.

One owner per object (docs/DELIVERY.md): with `workloads.gitops.enabled` (every shipped stack) Argo CD owns
the model deployments — per registered model enabled in config (`mlplatform:models.<name>.enabled`) the
Seldon `Model`s `<name>-champion` / `<name>-challenger` and the `Experiment` `<name>-experiment`, rendered by
contracts/deploy_tree.py into the deploy tree in git and applied by the Applications of
infra/workloads/gitops.py — and this component declares none of them. With GitOps off it declares the same
objects from the same renderer (label `managed-by: pulumi`, no released version: the runbooks record it).

Storage: Seldon's agent copies artifacts with rclone. The Secret `seldon-rclone-s3` holds an rclone
remote named `s3` (the storageUri scheme) with `env_auth`, so rclone takes credentials from the pod's
IRSA web identity (role `model-serving`, read-only on the models bucket): no key in any Secret. The
agent reads that Secret through the Kubernetes API, hence the Role bound to the server's account.

Feast: a Job in the `feast` namespace runs `feast apply` against the cluster's feature_store.yaml
(S3 registry, ElastiCache online store) with the definitions of every enabled model that has
features (its `ModelSpec.features.module`), rendered into a small repository file (`definitions_py`).
It runs in the model-server image, which carries the `ml` package (and any model plugin package) and
the Feast SDK pinned in the BOM; it is replaced, so re-run, when the image or the definitions change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts import deploy_tree, model_registry
from contracts.deploy_tree import RCLONE_SECRET, SELDON_API
from contracts.model_slots import RCLONE_REMOTE, SLOTS, check_slot
from contracts.model_slots import artifact_model_settings as artifact_model_settings  # re-exported
from contracts.model_slots import artifact_uri as artifact_uri  # re-exported
from contracts.models import ModelSpec
from infra.aws.interfaces import WORKLOAD_IDENTITIES, DataServices
from infra.aws.storage import FEAST_OFFLINE_PREFIX
from infra.workloads.feature_store import CONFIG_MAP as FEAST_CONFIG_MAP
from infra.workloads.feature_store import REDIS_SECRET, REPO_DIR, TMP_VOLUME
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    NODE_ROLE_LABEL,
    TMP_MOUNT,
    labels,
    pod_security_context,
    resources,
)
from stacks.context import StackContext
from stacks.delivery import model_releases
from stacks.schema import ModelConfig

NAMESPACE = WORKLOAD_IDENTITIES["model-serving"].namespace
FEAST_NAMESPACE = WORKLOAD_IDENTITIES["feast"].namespace
# Secrets the agent may read: ours, and the public-GCS one Seldon's runtime chart preloads.
AGENT_SECRETS = (RCLONE_SECRET, "seldon-rclone-gs-public")
DEFINITIONS_CONFIG_MAP = "feast-definitions"
DEFINITIONS_FILE = "definitions.py"
# features.py builds FileSources under a local directory; the Job's repository file moves them here.
OFFLINE_PLACEHOLDER = "/mlplat-offline"
FEAST_APPLY_DEADLINE_S = 900


@dataclass(frozen=True)
class EnabledModel:
    name: str
    config: ModelConfig
    spec: ModelSpec

    def resource(self, slot: str) -> str:
        return f"{self.name}-{check_slot(slot)}"

    @property
    def experiment(self) -> str:
        return f"{self.name}-experiment"


def enabled_models(ctx: StackContext) -> list[EnabledModel]:
    """The registered models switched on in config, in registry order."""
    models = ctx.cfg.models
    return [EnabledModel(name, models[name], model_registry.get(name)) for name in models.names()
            if models[name].enabled]


def rclone_config(region: str) -> str:
    """One rclone remote (Seldon's storage-secret format; every parameter a string)."""
    return json.dumps({"name": RCLONE_REMOTE, "type": "s3", "parameters": {
        "provider": "AWS", "env_auth": "true", "region": region}}, sort_keys=True)


def definitions_py(models: Mapping[str, str], offline_root: str) -> str:
    """The repository file `feast apply` imports: every model's Feast objects bound to module names
    (Feast collects module attributes), file sources moved from the placeholder to `offline_root`.

    `models`: model name -> its features module (`ModelSpec.features.module`). When every module is
    the built-in layout's `ml.models.<name>.features`, the file lists names only (the form existing
    stacks were deployed with); otherwise it maps each name to its module."""
    offline_root = offline_root.rstrip("/")
    if all(module == f"ml.models.{name}.features" for name, module in models.items()):
        listed, module_expr = repr(list(models)), 'f"ml.models.{_model}.features"'
    else:
        listed, module_expr = repr(dict(models)), "MODELS[_model]"
    return f'''"""Feast definitions of the reference models (generated by infra/workloads/models_cluster.py)."""
import importlib
from pathlib import Path

MODELS = {listed}
OFFLINE_ROOT = {offline_root!r}
PLACEHOLDER = {OFFLINE_PLACEHOLDER!r}

for _model in MODELS:
    _features = importlib.import_module({module_expr})
    for _i, _obj in enumerate(_features.definitions(Path(PLACEHOLDER) / _model)):
        _options = getattr(_obj, "file_options", None)
        if _options is not None and _options.uri.startswith(PLACEHOLDER + "/"):
            _options.uri = OFFLINE_ROOT + _options.uri[len(PLACEHOLDER):]
        globals()[f"{{_model}}_{{_i}}"] = _obj
'''


def feast_apply_job_spec(ctx: StackContext, image: pulumi.Input[str], definitions: pulumi.Input[str]) -> dict[str, Any]:
    """Job spec: `feast apply` as the feast service account, restricted pod, requests and limits.

    Only the image and the digest are outputs: in a first preview the image (in a repository created by
    the same update) is unknown, and the rest of the spec stays known for the policy pack to judge."""
    digest = pulumi.Output.all(image, definitions).apply(
        lambda a: hashlib.sha256(f"{a[0]}\n{a[1]}".encode()).hexdigest()[:16])
    job_labels = labels("feast", "apply")
    return {
        "backoffLimit": 3,
        "activeDeadlineSeconds": FEAST_APPLY_DEADLINE_S,
        "template": {
            "metadata": {"labels": job_labels, "annotations": {"mlplatform.io/definitions-sha256": digest}},
            "spec": {
                "serviceAccountName": WORKLOAD_IDENTITIES["feast"].service_account,
                "restartPolicy": "Never",
                "securityContext": pod_security_context(),
                "nodeSelector": {NODE_ROLE_LABEL: "general"},
                "containers": [{
                    "name": "feast-apply",
                    "image": image,
                    "command": ["feast", "-c", REPO_DIR, "apply"],
                    "env": [{"name": "REDIS_AUTH_TOKEN",
                             "valueFrom": {"secretKeyRef": {"name": REDIS_SECRET, "key": "token"}}},
                            {"name": "AWS_REGION", "value": ctx.cfg.region},
                            {"name": "HOME", "value": "/tmp"}, {"name": "FEAST_USAGE", "value": "False"}],
                    "resources": resources(ctx.cfg.workloads.feast.resources),
                    "securityContext": CONTAINER_SECURITY_CONTEXT,
                    "volumeMounts": [{"name": "repo", "mountPath": REPO_DIR, "readOnly": True}, TMP_MOUNT],
                }],
                # feature_store.yaml from the feature store's ConfigMap, definitions.py from ours.
                "volumes": [{"name": "repo", "projected": {"sources": [
                    {"configMap": {"name": FEAST_CONFIG_MAP, "items": [
                        {"key": "feature_store.yaml", "path": "feature_store.yaml"}]}},
                    {"configMap": {"name": DEFINITIONS_CONFIG_MAP, "items": [
                        {"key": DEFINITIONS_FILE, "path": DEFINITIONS_FILE}]}},
                ]}}, TMP_VOLUME],
            },
        },
    }


@dataclass(frozen=True, kw_only=True)
class ReferenceModelsArgs:
    """Inputs of `ReferenceModels` (which models and their settings: `models`)."""

    ctx: StackContext
    data: DataServices
    """The models bucket (artifacts) and the feast bucket (offline store of the Feast definitions)."""
    image: pulumi.Input[str]
    """The model-server image, which runs the Feast apply Job."""
    seldon: pulumi.Resource | None = None
    """The Seldon component the Models wait for; None: Seldon is not installed, no Models."""
    feast: pulumi.Resource | None = None
    """The feature store the apply Job waits for; None: Feast is not installed, no Job."""


class ReferenceModels(pulumi.ComponentResource):
    """Storage access of the Seldon Models (needs `seldon`; the Models and Experiments too when GitOps is
    off) and the Feast apply Job (needs `feast`); either part is skipped when its component is not installed."""

    model_names: list[str]

    def __init__(self, name: str, args: ReferenceModelsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:ReferenceModels", name, None, opts)
        ctx, data, image, seldon, feast = args.ctx, args.data, args.image, args.seldon, args.feast
        models = enabled_models(ctx)
        self.model_names = [m.name for m in models]
        if seldon is not None and models:
            self._serving(ctx, data, models, seldon)
        feast_models = {m.name: m.spec.features.module for m in models if m.spec.features is not None}
        if feast is not None and feast_models:
            self._feast_apply(ctx, data, image, feast_models, feast)
        self.register_outputs({"models": self.model_names})

    def _serving(self, ctx: StackContext, data: DataServices, models: list[EnabledModel],
                 seldon: pulumi.Resource) -> None:
        after = pulumi.ResourceOptions(parent=self, depends_on=[seldon])
        secret = k8s.core.v1.Secret(
            "rclone-s3", type="Opaque",
            metadata={"name": RCLONE_SECRET, "namespace": NAMESPACE, "labels": labels("seldon", "storage")},
            string_data={RCLONE_REMOTE: rclone_config(ctx.cfg.region)}, opts=after)
        role = k8s.rbac.v1.Role(
            "seldon-agent-role",
            metadata={"name": "model-server-agent", "namespace": NAMESPACE, "labels": labels("seldon", "agent")},
            rules=[
                # What Seldon's own agent Role grants, secrets narrowed to the storage secrets.
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": list(AGENT_SECRETS),
                 "verbs": ["get"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ], opts=after)
        binding = k8s.rbac.v1.RoleBinding(
            "seldon-agent-binding",
            metadata={"name": "model-server-agent", "namespace": NAMESPACE, "labels": labels("seldon", "agent")},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "model-server-agent"},
            subjects=[{"kind": "ServiceAccount", "namespace": NAMESPACE,
                       "name": WORKLOAD_IDENTITIES["model-serving"].service_account}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[seldon, role]))
        if ctx.cfg.workloads.gitops.enabled:
            return  # Argo CD applies the Models and Experiments from the deploy tree (infra/workloads/gitops.py)
        bucket = pulumi.Output.from_input(data.buckets["models"])
        releases = model_releases(ctx.cfg)
        for model in models:
            release = next(r for r in releases if r.name == model.name)
            made = []
            for slot in SLOTS:
                made.append(k8s.apiextensions.CustomResource(
                    f"model-{model.resource(slot)}", api_version=SELDON_API, kind="Model",
                    metadata=deploy_tree.model_metadata(release, slot, "pulumi"),
                    spec=bucket.apply(lambda b, r=release, s=slot: deploy_tree.model_object(r, s, b, "pulumi")["spec"]),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[seldon, secret, binding])))
            experiment = deploy_tree.experiment_object(release, "pulumi")
            k8s.apiextensions.CustomResource(
                f"experiment-{model.experiment}", api_version=SELDON_API, kind="Experiment",
                metadata=experiment["metadata"], spec=experiment["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=made))

    def _feast_apply(self, ctx: StackContext, data: DataServices, image: pulumi.Input[str],
                     models: dict[str, str], feast: pulumi.Resource) -> None:
        definitions = pulumi.Output.from_input(data.buckets["feast"]).apply(
            lambda b: definitions_py(models, f"s3://{b}/{FEAST_OFFLINE_PREFIX}"))
        config = k8s.core.v1.ConfigMap(
            "feast-definitions",
            metadata={"name": DEFINITIONS_CONFIG_MAP, "namespace": FEAST_NAMESPACE, "labels": labels("feast", "apply")},
            data={DEFINITIONS_FILE: definitions}, opts=pulumi.ResourceOptions(parent=self, depends_on=[feast]))
        # No fixed name: a changed spec creates a new Job (Jobs are immutable) instead of failing.
        k8s.batch.v1.Job(
            "feast-apply",
            metadata={"namespace": FEAST_NAMESPACE, "labels": labels("feast", "apply")},
            spec=feast_apply_job_spec(ctx, image, definitions),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[feast, config]))
