"""The Kubernetes operations runbooks perform, behind one small interface.

`ClusterKubeOps` uses the official client against the cluster in the current kubeconfig. Tests
inject `InMemoryKubeOps`, an honest stand-in that records calls and keeps state (no API server is
available here); the steps that use it are labelled as such in tests and docs.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any, Protocol

SELDON_GROUP, SELDON_VERSION = "mlops.seldon.io", "v1alpha1"
# Model spec.parameters our publishing sets. Seldon's Model controller acts on spec (generation)
# changes only, and its scheduler loads a new model version (re-copying storageUri) when the
# parameters differ; an annotation would change neither. Seldon hands the parameters to MLServer as
# model-settings `parameters.extra`, where our runtimes ignore these names.
REGISTRY_VERSION_PARAM, TOUCHED_AT_PARAM = "registry-version", "published-at"


def touched_parameters(current: list[dict[str, str]] | None, version: str, stamp: str) -> list[dict[str, str]]:
    """`current` with our two parameters replaced (others, set by someone else, are kept)."""
    ours = (REGISTRY_VERSION_PARAM, TOUCHED_AT_PARAM)
    kept = [p for p in current or [] if p.get("name") not in ours]
    return [*kept, {"name": REGISTRY_VERSION_PARAM, "value": str(version)}, {"name": TOUCHED_AT_PARAM, "value": stamp}]


def parameter(params: list[dict[str, str]] | None, name: str) -> str | None:
    return next((p.get("value") for p in params or [] if p.get("name") == name), None)


class KubeOps(Protocol):
    def experiment_weights(self, namespace: str, name: str) -> dict[str, int]: ...
    def set_experiment_weights(self, namespace: str, name: str, weights: dict[str, int]) -> None: ...
    def restart(self, kind: str, namespace: str, name: str) -> None: ...  # kind: deployment | statefulset
    def ready(self, kind: str, namespace: str, name: str) -> bool: ...
    def patch_secret(self, namespace: str, name: str, string_data: dict[str, str]) -> None: ...
    def run_job_from_cronjob(self, namespace: str, cronjob: str, job: str, args: list[str]) -> None: ...
    def job_succeeded(self, namespace: str, job: str) -> bool: ...
    # Seldon Model: reload its storageUri (after publishing `version` there) / the version last touched.
    def touch_model(self, namespace: str, name: str, version: str) -> None: ...
    def model_version(self, namespace: str, name: str) -> str | None: ...


# KubeOps kinds -> the official client's method names (AppsV1Api.patch_namespaced_stateful_set, ...).
_API_NAME = {"deployment": "deployment", "statefulset": "stateful_set"}


class ClusterKubeOps:
    """KubeOps against a real API server: the pod's service account inside a cluster (the receivers run
    there with `--kube cluster`), else the kubeconfig of the environment (an operator's machine)."""

    def __init__(self) -> None:
        from kubernetes import client, config

        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
        self._custom = client.CustomObjectsApi()
        self._apps = client.AppsV1Api()
        self._core = client.CoreV1Api()

    def experiment_weights(self, namespace: str, name: str) -> dict[str, int]:
        exp = self._custom.get_namespaced_custom_object(SELDON_GROUP, SELDON_VERSION, namespace, "experiments", name)
        return {c["name"]: int(c.get("weight", 0)) for c in exp["spec"]["candidates"]}

    def set_experiment_weights(self, namespace: str, name: str, weights: dict[str, int]) -> None:
        candidates = [{"name": k, "weight": v} for k, v in weights.items()]
        self._custom.patch_namespaced_custom_object(
            SELDON_GROUP, SELDON_VERSION, namespace, "experiments", name, {"spec": {"candidates": candidates}}
        )

    def restart(self, kind: str, namespace: str, name: str) -> None:
        """`kubectl rollout restart`: a new pod-template annotation makes the controller roll the pods."""
        stamp = datetime.now(UTC).isoformat()
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        getattr(self._apps, f"patch_namespaced_{_API_NAME[kind]}")(name, namespace, patch)

    def ready(self, kind: str, namespace: str, name: str) -> bool:
        d = getattr(self._apps, f"read_namespaced_{_API_NAME[kind]}_status")(name, namespace)
        want = d.spec.replicas or 0
        available = d.status.available_replicas if kind == "deployment" else d.status.ready_replicas
        return (d.status.updated_replicas or 0) == want and (available or 0) == want

    def patch_secret(self, namespace: str, name: str, string_data: dict[str, str]) -> None:
        self._core.patch_namespaced_secret(name, namespace, {"stringData": string_data})

    def run_job_from_cronjob(self, namespace: str, cronjob: str, job: str, args: list[str]) -> None:
        from kubernetes import client

        template = client.BatchV1Api().read_namespaced_cron_job(cronjob, namespace).spec.job_template
        template.spec.template.spec.containers[0].args = args
        body = client.V1Job(metadata=client.V1ObjectMeta(name=job, namespace=namespace), spec=template.spec)
        client.BatchV1Api().create_namespaced_job(namespace, body)

    def job_succeeded(self, namespace: str, job: str) -> bool:
        from kubernetes import client

        status = client.BatchV1Api().read_namespaced_job_status(job, namespace).status
        if status.failed:
            raise RuntimeError(f"job {namespace}/{job} failed")
        return bool(status.succeeded)

    def touch_model(self, namespace: str, name: str, version: str) -> None:
        model = self._custom.get_namespaced_custom_object(SELDON_GROUP, SELDON_VERSION, namespace, "models", name)
        params = touched_parameters(model["spec"].get("parameters"), version, datetime.now(UTC).isoformat())
        # resourceVersion makes the merge patch fail on a concurrent change instead of overwriting it.
        patch = {"metadata": {"resourceVersion": model["metadata"]["resourceVersion"]},
                 "spec": {"parameters": params}}
        self._custom.patch_namespaced_custom_object(SELDON_GROUP, SELDON_VERSION, namespace, "models", name, patch)

    def model_version(self, namespace: str, name: str) -> str | None:
        model = self._custom.get_namespaced_custom_object(SELDON_GROUP, SELDON_VERSION, namespace, "models", name)
        return parameter(model["spec"].get("parameters"), REGISTRY_VERSION_PARAM)


class InMemoryKubeOps:
    """Injectable stand-in with the same behaviour contract, for tests and offline rehearsal."""

    def __init__(self, experiments: dict[tuple[str, str], dict[str, int]] | None = None,
                 workloads: set[tuple[str, str, str]] | None = None,
                 models: set[tuple[str, str]] | None = None) -> None:
        self.experiments = dict(experiments or {})
        # (namespace, name) of the Seldon Models that exist -> their spec.parameters
        self.models: dict[tuple[str, str], list[dict[str, str]]] = {m: [] for m in models or ()}
        self.workloads = set(workloads or ())  # (kind, namespace, name) that exist and become ready
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.jobs: dict[tuple[str, str], bool] = {}
        self.calls: list[tuple[str, Any]] = []

    def experiment_weights(self, namespace: str, name: str) -> dict[str, int]:
        self.calls.append(("experiment_weights", (namespace, name)))
        return dict(self.experiments[(namespace, name)])

    def set_experiment_weights(self, namespace: str, name: str, weights: dict[str, int]) -> None:
        self.calls.append(("set_experiment_weights", (namespace, name, dict(weights))))
        if (namespace, name) not in self.experiments:
            raise KeyError(f"experiment {namespace}/{name} not found")
        self.experiments[(namespace, name)] = dict(weights)

    def restart(self, kind: str, namespace: str, name: str) -> None:
        self.calls.append(("restart", (kind, namespace, name, time.time())))
        if (kind, namespace, name) not in self.workloads:
            raise KeyError(f"{kind} {namespace}/{name} not found")

    def ready(self, kind: str, namespace: str, name: str) -> bool:
        return (kind, namespace, name) in self.workloads

    def patch_secret(self, namespace: str, name: str, string_data: dict[str, str]) -> None:
        self.calls.append(("patch_secret", (namespace, name, sorted(string_data))))
        self.secrets.setdefault((namespace, name), {}).update(string_data)

    def run_job_from_cronjob(self, namespace: str, cronjob: str, job: str, args: list[str]) -> None:
        self.calls.append(("run_job_from_cronjob", (namespace, cronjob, job, list(args))))
        self.jobs[(namespace, job)] = True

    def job_succeeded(self, namespace: str, job: str) -> bool:
        return self.jobs.get((namespace, job), False)

    def touch_model(self, namespace: str, name: str, version: str) -> None:
        self.calls.append(("touch_model", (namespace, name, str(version))))
        if (namespace, name) not in self.models:
            raise KeyError(f"model {namespace}/{name} not found")
        stamp = datetime.now(UTC).isoformat()
        self.models[(namespace, name)] = touched_parameters(self.models[(namespace, name)], version, stamp)

    def model_version(self, namespace: str, name: str) -> str | None:
        return parameter(self.models[(namespace, name)], REGISTRY_VERSION_PARAM)
