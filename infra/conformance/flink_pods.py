"""The pods the Flink Kubernetes Operator makes for a FlinkDeployment, so that wiring, reachability and Pod Security
see them.

For a FlinkDeployment in application mode, the operator deploys the cluster through Flink's native Kubernetes
integration: a JobManager Deployment named after the FlinkDeployment, and TaskManager pods the JobManager starts.
Both are built from `spec.podTemplate` merged with `spec.jobManager.podTemplate` / `spec.taskManager.podTemplate`
(the container named `flink-main-container` is Flink's own), with the FlinkDeployment's image and service account
and the labels `app: <name>`, `component: jobmanager|taskmanager`, `type: flink-native-kubernetes`, and the fixed
ports REST 8081, JobManager RPC 6123, blob server 6124, TaskManager RPC 6122 (apache/flink, tag release-2.2.1,
flink-kubernetes/src/main/java/org/apache/flink/kubernetes/utils/Constants.java and the InitJobManagerDecorator /
InitTaskManagerDecorator beside it). Flink sets no securityContext of its own: the template's is the pod's.
"""

from __future__ import annotations

import copy
from typing import Any

from infra.conformance.model import KubeObject

FLINK_API = "flink.apache.org/v1beta1"
MAIN_CONTAINER = "flink-main-container"
PORTS = {
    "jobmanager": [{"name": "rest", "containerPort": 8081}, {"name": "jobmanager-rpc", "containerPort": 6123},
                   {"name": "blobserver", "containerPort": 6124}],
    "taskmanager": [{"name": "taskmanager-rpc", "containerPort": 6122}],
}


def _merge_template(base: dict[str, Any], side: dict[str, Any]) -> dict[str, Any]:
    """The operator merges the component's template over the common one (containers by name)."""
    out = copy.deepcopy(base)
    out.setdefault("metadata", {}).setdefault("labels", {}).update((side.get("metadata") or {}).get("labels") or {})
    spec = out.setdefault("spec", {})
    for key, value in (side.get("spec") or {}).items():
        if key != "containers":
            spec[key] = copy.deepcopy(value)
    containers = {c.get("name"): c for c in spec.get("containers") or []}
    for c in (side.get("spec") or {}).get("containers") or []:
        containers[c.get("name")] = {**containers.get(c.get("name"), {}), **copy.deepcopy(c)}
    spec["containers"] = list(containers.values())
    return out


def _pod_spec(name: str, spec: dict[str, Any], component: str) -> tuple[dict[str, str], dict[str, Any]]:
    side = spec.get("jobManager" if component == "jobmanager" else "taskManager") or {}
    template = _merge_template(spec.get("podTemplate") or {}, side.get("podTemplate") or {})
    pod_spec = template.get("spec") or {}
    containers = pod_spec.get("containers") or []
    main = next((c for c in containers if c.get("name") == MAIN_CONTAINER), None)
    if main is None:
        main = {"name": MAIN_CONTAINER}
        containers.insert(0, main)
    main["image"] = spec.get("image")
    main["ports"] = [*PORTS[component], *(main.get("ports") or [])]
    pod_spec["containers"] = containers
    pod_spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    pod_spec["volumes"] = [*(pod_spec.get("volumes") or []),
                           {"name": "flink-config-volume", "configMap": {"name": f"flink-config-{name}"}}]
    labels = {**((template.get("metadata") or {}).get("labels") or {}), "app": name, "component": component,
              "type": "flink-native-kubernetes"}
    return labels, pod_spec


def flink_pods(objects: list[KubeObject]) -> list[KubeObject]:
    """The JobManager Deployment, a TaskManager pod and the `flink-config-<name>` ConfigMap (the operator writes
    `spec.flinkConfiguration` into it; both mount it) of every FlinkDeployment."""
    out = []
    for obj in objects:
        if obj.api_version != FLINK_API or obj.kind != "FlinkDeployment":
            continue
        spec = obj.manifest.get("spec") or {}
        origin = f"Flink Kubernetes Operator + Flink native Kubernetes: from FlinkDeployment {obj.namespace}/{obj.name}"
        config = "\n".join(f"{k}: {v}" for k, v in sorted((spec.get("flinkConfiguration") or {}).items()))
        out.append(KubeObject({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": f"flink-config-{obj.name}", "namespace": obj.namespace},
                               "data": {"config.yaml": config}}, origin=origin, release=obj.release, derived=True))
        labels, jm = _pod_spec(obj.name, spec, "jobmanager")
        replicas = (spec.get("jobManager") or {}).get("replicas", 1)
        out.append(KubeObject({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": obj.name, "namespace": obj.namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": jm}}},
            origin=origin, release=obj.release, derived=True))
        labels, tm = _pod_spec(obj.name, spec, "taskmanager")
        out.append(KubeObject({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": f"{obj.name}-taskmanager-1-1", "namespace": obj.namespace,
                                            "labels": labels},
                               "spec": tm}, origin=origin, release=obj.release, derived=True))
    return out
