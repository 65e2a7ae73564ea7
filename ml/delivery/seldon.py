"""The cluster's traffic splitter: the Seldon Experiment `<model>-experiment` (Seldon Core 2, v1alpha1).

The Experiment the platform declares (infra/workloads/models_cluster.py) has two candidates,
`<model>-champion` and `<model>-challenger`, with integer weights. A weight change is a JSON merge patch
of `spec.candidates` (the whole list: a merge patch replaces arrays); shadow traffic is `spec.mirror`
(`{name: <model>-challenger, percent: N}`, removed with `null`). Seldon's mirror copies requests to the
model and drops its answers, which is what shadow means.

Ownership: Argo CD owns the Experiment (rendered from the deploy tree), the delivery controllers own its
weights and mirror. Argo CD is told to ignore exactly those fields (`ARGOCD_IGNORE_DIFFERENCES`, with the
sync option `RespectIgnoreDifferences=true` so a sync does not reset them), so a canary step is an
Experiment patch, effective in seconds, and the final promotion (a new champion) is a git change of the
deploy tree, reviewed where the environment requires it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

from contracts.cluster import SELDON_NAMESPACE
from contracts.deploy_tree import EXPERIMENT_RUNTIME_FIELDS
from ml.delivery.splitter import (
    CHALLENGER,
    VARIANTS,
    SplitterError,
    check_mirror,
    check_weights,
)

GROUP, VERSION, PLURAL, KIND = "mlops.seldon.io", "v1alpha1", "experiments", "Experiment"

# For the Argo CD Application(Set): the fields a rollout, shadow, A/B test or bandit changes at run time.
ARGOCD_IGNORE_DIFFERENCES: dict[str, Any] = {
    "group": GROUP,
    "kind": KIND,
    "jqPathExpressions": list(EXPERIMENT_RUNTIME_FIELDS),
}
ARGOCD_SYNC_OPTIONS = ("RespectIgnoreDifferences=true",)


def experiment_name(model: str) -> str:
    return f"{model}-experiment"


def candidate(model: str, variant: str) -> str:
    """The Seldon Model name of `model`'s `variant` (the Experiment's candidate)."""
    return f"{model}-{variant}"


def weights_patch(model: str, weights: Mapping[str, int]) -> dict[str, Any]:
    """The merge patch that sets every candidate's weight."""
    wanted = check_weights(model, weights)
    return {"spec": {"candidates": [{"name": candidate(model, v), "weight": wanted[v]} for v in VARIANTS]}}


def mirror_patch(model: str, variant: str | None, percent: int) -> dict[str, Any]:
    """The merge patch that mirrors `percent` % to `variant`, or removes the mirror (`null`)."""
    variant, percent = check_mirror(model, variant, percent)
    if variant is None:
        return {"spec": {"mirror": None}}
    return {"spec": {"mirror": {"name": candidate(model, variant), "percent": percent}}}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server applies for `application/merge-patch+json`): maps merge,
    null deletes, anything else replaces. A new document: neither argument is shared with the result, so the
    test fakes of the API server can store it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class ExperimentApi(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


class KubernetesExperimentApi:
    """Experiments through the official client (in-cluster service account, else the kubeconfig)."""

    def __init__(self) -> None:
        # The Kubernetes client is imported here: it is needed only against a cluster, and slow to import.
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self._api = client.CustomObjectsApi()

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self._api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        # A dict body is sent as application/merge-patch+json by the client for custom objects.
        return dict(self._api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body))


class SeldonSplitter:
    """The Splitter protocol (ml/delivery/splitter.py) on Seldon Experiments."""

    def __init__(self, api: ExperimentApi, namespace: str = SELDON_NAMESPACE) -> None:
        self.api = api
        self.namespace = namespace

    def _spec(self, model: str) -> dict[str, Any]:
        exp = self.api.get(self.namespace, experiment_name(model))
        spec = exp.get("spec") or {}
        if "candidates" not in spec:
            raise SplitterError(f"Experiment {self.namespace}/{experiment_name(model)} has no spec.candidates")
        return spec

    def weights(self, model: str) -> dict[str, int]:
        by_name = {c["name"]: int(c.get("weight", 0)) for c in self._spec(model)["candidates"]}
        missing = [candidate(model, v) for v in VARIANTS if candidate(model, v) not in by_name]
        if missing:
            raise SplitterError(f"Experiment {experiment_name(model)} lacks candidate(s) {', '.join(missing)}")
        return {v: by_name[candidate(model, v)] for v in VARIANTS}

    def set_weights(self, model: str, weights: Mapping[str, int]) -> None:
        self.api.patch(self.namespace, experiment_name(model), weights_patch(model, weights))

    def mirror(self, model: str) -> tuple[str | None, int]:
        mirror = self._spec(model).get("mirror")
        if not mirror:
            return None, 0
        if mirror.get("name") != candidate(model, CHALLENGER):
            raise SplitterError(f"Experiment {experiment_name(model)} mirrors to {mirror.get('name')!r}, not the "
                                f"{CHALLENGER}")
        return CHALLENGER, int(mirror.get("percent", 0))

    def set_mirror(self, model: str, variant: str | None, percent: int) -> None:
        self.api.patch(self.namespace, experiment_name(model), mirror_patch(model, variant, percent))
