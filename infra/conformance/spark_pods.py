"""The pods the Spark Operator's applications make, so that wiring, reachability and Pod Security see them.

kubeflow/spark-operator v2.5.2 runs spark-submit for a `SparkApplication` (a `ScheduledSparkApplication`
creates one from its `spec.template` on each tick, with the scheduled resource's labels:
internal/controller/scheduledsparkapplication/controller.go). With a pod template
(`driver.template` / `executor.template`, Spark >= 3.0) the operator writes it to a file and names the
container Spark fills in: `spark-kubernetes-driver` and `spark-kubernetes-executor`
(internal/controller/sparkapplication/submission.go driverPodTemplateOption / executorPodTemplateOption,
pkg/common/spark.go). Spark then builds each pod from the template: the template's metadata and pod spec,
the application's image and service account on that container, the labels `spark-role` and
`sparkoperator.k8s.io/app-name`, and its own volumes (the properties ConfigMap, an emptyDir of local
scratch space); it sets no securityContext of its own, so the template's is the pod's.
"""

from __future__ import annotations

import copy
from typing import Any

from infra.conformance.model import KubeObject

SPARK_API = "sparkoperator.k8s.io/v1beta2"
CONTAINERS = {"driver": "spark-kubernetes-driver", "executor": "spark-kubernetes-executor"}


def _pod(app_name: str, namespace: str, spec: dict[str, Any], role: str, origin: str,
         release: str | None) -> KubeObject:
    side = spec.get(role) or {}
    template = copy.deepcopy(side.get("template") or {})
    pod_spec = template.get("spec") or {}
    containers = pod_spec.get("containers") or [{"name": CONTAINERS[role]}]
    for container in containers:
        if container.get("name") == CONTAINERS[role]:
            container["image"] = side.get("image") or spec.get("image")
    pod_spec["containers"] = containers
    pod_spec["serviceAccountName"] = side.get("serviceAccount") or pod_spec.get("serviceAccountName") or "default"
    pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), {"name": "spark-local-dir-1", "emptyDir": {}}]
    labels = {**((template.get("metadata") or {}).get("labels") or {}), **(side.get("labels") or {}),
              "spark-role": role, "sparkoperator.k8s.io/app-name": app_name}
    manifest = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{app_name}-{role}", "namespace": namespace, "labels": labels},
                "spec": pod_spec}
    return KubeObject(manifest, origin=origin, release=release, derived=True)


def spark_pods(objects: list[KubeObject]) -> list[KubeObject]:
    """The driver and an executor pod of every SparkApplication and ScheduledSparkApplication."""
    out = []
    for obj in objects:
        if obj.api_version != SPARK_API or obj.kind not in ("SparkApplication", "ScheduledSparkApplication"):
            continue
        spec = obj.manifest.get("spec") or {}
        app = spec.get("template") or {} if obj.kind == "ScheduledSparkApplication" else spec
        origin = f"Spark Operator + spark-submit: from {obj.kind} {obj.namespace}/{obj.name}"
        for role in ("driver", "executor"):
            out.append(_pod(obj.name, obj.namespace, app, role, origin, obj.release))
    return out
