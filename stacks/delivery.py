"""A stack's deploy tree inputs: the enabled models' serving settings as contracts/deploy_tree.py takes them.

The Pulumi program (which objects Argo CD will own, and its Applications), the promotion code that commits
a release and the tests read the tree's inputs from here, so the stack file is their one source.
"""

from __future__ import annotations

from collections.abc import Mapping

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
                                versions=dict(versions.get(name, {}))))
    return out
