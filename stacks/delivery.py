"""A stack's deploy tree inputs: the enabled models' serving settings as contracts/deploy_tree.py takes them.

The Pulumi program (which objects Argo CD will own, and its Applications), the promotion code that commits
a release and the tests read the tree's inputs from here, so the stack file is their one source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from contracts import model_registry
from contracts.deploy_tree import ModelRelease
from stacks.schema import PlatformConfig


def model_releases(cfg: PlatformConfig,
                   versions: Mapping[str, Mapping[str, str]] | None = None) -> list[ModelRelease]:
    """One `ModelRelease` per enabled model, in registry order. `versions`: model -> slot -> released
    registry version (a model or slot missing there has no recorded release)."""
    versions = versions or {}
    out = []
    for name in cfg.models.names():
        model = cfg.models[name]
        if not model.enabled:
            continue
        out.append(ModelRelease(name=name, replicas=model.min_replicas,
                                champion_weight=model.experiment.champion_weight,
                                challenger_weight=model.experiment.challenger_weight,
                                versions=dict(versions.get(name, {})),
                                explainer=model_registry.get(name).explainer_name))
    return out


def deploy_parameter(cfg: PlatformConfig, bucket: str, location: str | None = None) -> str:
    """The `deploy` run parameter of `cfg`'s pipelines: JSON, sorted keys; `location` replaces the repository
    URL and drops the credentials (the local platform's bare repository needs none)."""
    g = cfg.workloads.gitops
    models = [{"name": m.name, "replicas": m.replicas, "championWeight": m.champion_weight,
               "challengerWeight": m.challenger_weight, "explainer": m.explainer} for m in model_releases(cfg)]
    return json.dumps({"repoUrl": location or g.repo_url, "branch": g.branch, "path": g.path,
                       "promotion": g.promotion, "environment": cfg.environment, "bucket": bucket,
                       "credentialsSecret": None if location else g.credentials_secret, "models": models},
                      sort_keys=True)


def writes_tree_over_ssh(cfg: PlatformConfig) -> bool:
    """Whether the platform's own pods (the publish step, the rollback receiver) push to the deploy repository
    over SSH: their namespaces then need egress to port 22 besides HTTPS."""
    g = cfg.workloads.gitops
    return g.enabled and bool(g.credentials_secret) and not g.repo_url.startswith("https://")
