"""Workloads that operators create from custom resources, so that wiring checks see their pods.

Seldon Core 2, as its operator does at the pinned tag v2.10.2 (SeldonIO/seldon-core):
- a `Server` becomes a StatefulSet named like the Server; pod labels `seldon-server-name: <server>`
  and `app.kubernetes.io/name: seldon-server` plus the Server's and ServerConfig's labels
  (operator/controllers/reconcilers/server/statefulset_reconciler.go, toStatefulSet); the pod spec is
  the ServerConfig's with the Server's `podSpec` merged over it, containers merged by name
  (operator/controllers/reconcilers/common/patch_utils.go, MergePodSpecs / MergeContainers);
- a `SeldonRuntime` makes one Deployment (StatefulSet for the scheduler) per component of its
  `SeldonConfig`, unless an override disables it; pod label `app.kubernetes.io/name: <component>`
  plus the component's labels (operator/controllers/reconcilers/seldon/deployment_reconciler.go,
  statefulset_reconciler.go), the override's podSpec merged the same way; and the ServiceAccounts
  `hodometer`, `seldon-scheduler`, `seldon-server` (rbac_reconciler.go) and the ConfigMaps
  `seldon-agent`, `seldon-scaling`, `seldon-kafka`, `seldon-tracing` (configmap_reconciler.go).

The Seldon operator sets no securityContext of its own (none in operator/ at v2.10.2): a pod's is the
config's with the Server's or override's merged over it.

prometheus-operator (v0.93.1, the appVersion of kube-prometheus-stack 88.5.3): a `Prometheus` or
`Alertmanager` becomes a StatefulSet whose pods carry `app.kubernetes.io/name: prometheus|alertmanager`
and `operator.prometheus.io/name: <name>`, with container ports `web` and `reloader-web`; the pod's
securityContext is the resource's `spec.securityContext`, and the operator's own containers (the server,
`config-reloader`, the init container `init-config-reloader`) each set allowPrivilegeEscalation false,
a read-only root and all capabilities dropped; the resource's `spec.containers` / `spec.initContainers`
are merged over them by name (pkg/prometheus/server/statefulset.go, pkg/alertmanager/statefulset.go,
pkg/operator/config_reloader.go, pkg/k8sutil MergePatchContainers; read at v0.93.0, the newest tag of the
mirror of the operator's repository: the chart pins v0.93.1, a patch release the mirror does not hold).
"""

from __future__ import annotations

import copy
from typing import Any

from infra.conformance.flink_pods import flink_pods
from infra.conformance.model import KubeObject
from infra.conformance.spark_pods import spark_pods

SELDON_API = "mlops.seldon.io/v1alpha1"
STATEFUL_COMPONENTS = {"seldon-scheduler"}


def _merge(base: Any, override: Any) -> Any:
    """mergo.Merge(WithOverride, WithAppendSlice): maps merge, slices append, non-empty scalars win."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + copy.deepcopy(override)
    if override in (None, "", 0, False, [], {}):
        return base
    return copy.deepcopy(override)


def _merge_by_name(base: list[dict[str, Any]], override: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {c.get("name") for c in override}
    merged = [_merge(next(b for b in base if b.get("name") == o.get("name")), o)
              if any(b.get("name") == o.get("name") for b in base) else copy.deepcopy(o) for o in override]
    return [c for c in base if c.get("name") not in names] + merged


def merge_pod_specs(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    base = copy.deepcopy(base or {})
    if not override:
        return base
    containers = base.get("containers") or []
    merged = _merge({k: v for k, v in base.items() if k != "containers"},
                    {k: v for k, v in override.items() if k != "containers"})
    out_containers = []
    for over in override.get("containers") or []:
        same = [c for c in containers if c.get("name") == over.get("name")]
        if same:
            out_containers.extend(_merge(c, over) for c in same)
        else:
            out_containers.append(over)
    names = {c.get("name") for c in override.get("containers") or []}
    out_containers.extend(c for c in containers if c.get("name") not in names)
    merged["containers"] = out_containers
    return merged


def _workload(kind: str, name: str, namespace: str, labels: dict[str, str], pod_labels: dict[str, str],
              pod_spec: dict[str, Any], replicas: Any, origin: str, release: str | None = None,
              claims: list[dict[str, Any]] | None = None) -> KubeObject:
    manifest: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind,
                                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                                "spec": {"replicas": replicas, "selector": {"matchLabels": dict(pod_labels)},
                                         "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}}}
    if claims:
        manifest["spec"]["volumeClaimTemplates"] = claims
    # Counted against the release (or the program) that declares the custom resource.
    return KubeObject(manifest, origin=origin, release=release, derived=True)


def _by_name(objects: list[KubeObject], kind: str) -> dict[tuple[str, str], KubeObject]:
    return {(o.namespace, o.name): o for o in objects if o.kind == kind and o.api_version == SELDON_API}


def seldon_workloads(objects: list[KubeObject]) -> list[KubeObject]:
    configs = _by_name(objects, "ServerConfig")
    seldon_configs = _by_name(objects, "SeldonConfig")
    out = []
    for server in (o for o in objects if o.kind == "Server" and o.api_version == SELDON_API):
        spec = server.manifest.get("spec") or {}
        config = configs.get((server.namespace, spec.get("serverConfig")))
        if config is None:
            continue  # wiring reports the missing ServerConfig
        cfg_meta = config.manifest.get("metadata") or {}
        labels = {**(cfg_meta.get("labels") or {}), **server.labels}
        pod_labels = {**labels, "seldon-server-name": server.name, "app.kubernetes.io/name": "seldon-server"}
        pod_spec = merge_pod_specs((config.manifest.get("spec") or {}).get("podSpec"), spec.get("podSpec"))
        # The ServerConfig's volumeClaimTemplates (Seldon's type: `name` + `spec`) become the StatefulSet's.
        claims = [{"metadata": {"name": t.get("name")}, "spec": t.get("spec") or {}}
                  for t in (config.manifest.get("spec") or {}).get("volumeClaimTemplates") or []]
        out.append(_workload("StatefulSet", server.name, server.namespace,
                             {**labels, "app.kubernetes.io/name": "seldon-server"}, pod_labels, pod_spec,
                             spec.get("replicas", 1), f"Seldon operator: from Server {server.namespace}/{server.name}",
                             server.release, claims))
    for runtime in (o for o in objects if o.kind == "SeldonRuntime" and o.api_version == SELDON_API):
        spec = runtime.manifest.get("spec") or {}
        config = seldon_configs.get((runtime.namespace, spec.get("seldonConfig"))) or next(
            (c for (_, name), c in seldon_configs.items() if name == spec.get("seldonConfig")), None)
        if config is None:
            continue
        overrides = {o.get("name"): o for o in spec.get("overrides") or []}
        meta_labels = (config.manifest.get("metadata") or {}).get("labels") or {}
        for component in (config.manifest.get("spec") or {}).get("components") or []:
            name = component.get("name")
            override = overrides.get(name) or {}
            if override.get("disable"):
                continue
            labels = {**(component.get("labels") or {}), **meta_labels, **runtime.labels,
                      "app.kubernetes.io/name": name}
            pod_spec = merge_pod_specs(component.get("podSpec"), override.get("podSpec"))
            kind = "StatefulSet" if name in STATEFUL_COMPONENTS else "Deployment"
            replicas = override.get("replicas", component.get("replicas", 1))
            out.append(_workload(kind, name, runtime.namespace, labels, labels, pod_spec, replicas,
                                 f"Seldon operator: component {name} of SeldonRuntime "
                                 f"{runtime.namespace}/{runtime.name}", runtime.release))
    return out


SELDON_RUNTIME_ACCOUNTS = ("hodometer", "seldon-scheduler", "seldon-server")
SELDON_RUNTIME_CONFIGMAPS = ("seldon-agent", "seldon-scaling", "seldon-kafka", "seldon-tracing")


def seldon_runtime_objects(objects: list[KubeObject]) -> list[KubeObject]:
    out = []
    for runtime in (o for o in objects if o.kind == "SeldonRuntime" and o.api_version == SELDON_API):
        origin = f"Seldon operator: for SeldonRuntime {runtime.namespace}/{runtime.name}"
        for kind, names in (("ServiceAccount", SELDON_RUNTIME_ACCOUNTS), ("ConfigMap", SELDON_RUNTIME_CONFIGMAPS)):
            for name in names:
                out.append(KubeObject({"apiVersion": "v1", "kind": kind,
                                       "metadata": {"name": name, "namespace": runtime.namespace}},
                                      origin=origin, derived=True))
    return out


PROMETHEUS_API = "monitoring.coreos.com/v1"
OPERATOR_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                               "capabilities": {"drop": ["ALL"]}}
PROMETHEUS_PORTS = {"Prometheus": ("prometheus", 9090), "Alertmanager": ("alertmanager", 9093)}


def prometheus_workloads(objects: list[KubeObject]) -> list[KubeObject]:
    out = []
    for obj in objects:
        if obj.api_version != PROMETHEUS_API or obj.kind not in PROMETHEUS_PORTS:
            continue
        app, port = PROMETHEUS_PORTS[obj.kind]
        spec = obj.manifest.get("spec") or {}
        labels = {**((spec.get("podMetadata") or {}).get("labels") or {}), "app.kubernetes.io/name": app,
                  "operator.prometheus.io/name": obj.name, app: obj.name}
        operator_pod = {
            "serviceAccountName": spec.get("serviceAccountName") or "default",
            "securityContext": copy.deepcopy(spec.get("securityContext")),
            "initContainers": [{"name": "init-config-reloader", "securityContext": OPERATOR_CONTAINER_SECURITY}],
            "containers": [{"name": app, "ports": [{"name": "web", "containerPort": port}],
                            "securityContext": OPERATOR_CONTAINER_SECURITY},
                           {"name": "config-reloader", "ports": [{"name": "reloader-web", "containerPort": 8080}],
                            "securityContext": OPERATOR_CONTAINER_SECURITY}]}
        pod_spec = merge_pod_specs(operator_pod, {"containers": spec.get("containers") or []})
        pod_spec["initContainers"] = _merge_by_name(operator_pod["initContainers"], spec.get("initContainers") or [])
        out.append(_workload("StatefulSet", f"{app}-{obj.name}", obj.namespace, labels, labels, pod_spec,
                             spec.get("replicas", 1),
                             f"prometheus-operator: from {obj.kind} {obj.namespace}/{obj.name}", obj.release))
    return out


def derived_workloads(objects: list[KubeObject]) -> list[KubeObject]:
    return (seldon_workloads(objects) + seldon_runtime_objects(objects) + prometheus_workloads(objects)
            + flink_pods(objects) + spark_pods(objects))
