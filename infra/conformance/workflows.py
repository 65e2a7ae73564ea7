"""The pods that Argo Workflows makes for Kubeflow Pipelines runs, so that admission sees them.

A KFP run is an Argo Workflow that the KFP API server compiles (kubeflow/pipelines 2.17.0,
backend/src/v2/compiler/argocompiler): the workflow-level pod securityContext is runAsNonRoot with the
RuntimeDefault seccomp profile (argo.go); driver and DAG templates get that pod default and, on every
container without one, allowPrivilegeEscalation false, runAsNonRoot, all capabilities dropped and
RuntimeDefault seccomp (security_context.go, applySecurityContextToTemplate); the executor template that
runs a component gets a pod securityContext with the seccomp profile only, its user container the same
container defaults but runAsNonRoot only when the `defaultSecurityContextRunAsNonRoot` key of
`pipeline-install-config` sets it (applySecurityContextToExecutorTemplate, with the API server's
DEFAULT_SECURITY_CONTEXT_* variables), and its `kfp-launcher` init container the full defaults.
Argo Workflows (v4.0.5) adds its own `init` and `wait` containers with the `executor.securityContext` of
the workflow-controller ConfigMap, and a template's own pod securityContext replaces the workflow's
(argoproj/argo-workflows v4.0.5 workflow/controller/workflowpod.go, newExecContainer and createWorkflowPod).

One pod per template kind is derived in the namespace of the workflow controller's ConfigMap (KFP in
single-user mode runs its workflows there).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from infra.conformance.model import KubeObject

INSTALL_CONFIG = "pipeline-install-config"
CONTAINER_DEFAULTS = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}
USER_CONTAINER_DEFAULTS = {k: v for k, v in CONTAINER_DEFAULTS.items() if k != "runAsNonRoot"}


def _executor_config(configmap: KubeObject) -> dict[str, Any] | None:
    text = (configmap.manifest.get("data") or {}).get("config")
    if not text:
        return None
    config = yaml.safe_load(text) or {}
    return config.get("executor") or {}


def _pod(name: str, namespace: str, origin: str, spec: dict[str, Any], release: str | None) -> KubeObject:
    return KubeObject({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": namespace,
                                    "labels": {"workflows.argoproj.io/workflow": "kfp-run"}},
                       "spec": spec}, origin=origin, release=release, derived=True)


def workflow_pods(objects: list[KubeObject]) -> list[KubeObject]:
    out = []
    for cm in objects:
        if cm.kind != "ConfigMap" or not cm.name.endswith("workflow-controller-configmap"):
            continue
        executor = _executor_config(cm)
        if executor is None:
            continue
        install = next((o for o in objects if o.kind == "ConfigMap" and o.name == INSTALL_CONFIG
                        and o.namespace == cm.namespace), None)
        run_as_non_root = str(((install.manifest.get("data") or {}) if install else {}).get(
            "defaultSecurityContextRunAsNonRoot", "")).lower()
        argo_sc = copy.deepcopy(executor.get("securityContext"))
        argo = [{"name": "init", **({"securityContext": argo_sc} if argo_sc else {})}]
        wait = [{"name": "wait", **({"securityContext": argo_sc} if argo_sc else {})}]
        origin = f"Argo Workflows + KFP compiler: from ConfigMap {cm.namespace}/{cm.name}"
        driver_pod_sc = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        out.append(_pod("kfp-driver", cm.namespace, f"{origin} (driver/DAG template)", {
            "securityContext": driver_pod_sc, "initContainers": copy.deepcopy(argo),
            "containers": [{"name": "main", "securityContext": dict(CONTAINER_DEFAULTS)}, *copy.deepcopy(wait)]},
            cm.release))
        host_users = str(((install.manifest.get("data") or {}) if install else {}).get(
            "defaultSecurityContextHostUsers", "")).lower()
        main_sc = dict(USER_CONTAINER_DEFAULTS)
        if run_as_non_root in ("true", "false"):
            main_sc["runAsNonRoot"] = run_as_non_root == "true"
        out.append(_pod("kfp-executor", cm.namespace, f"{origin} (component executor template)", {
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            **({"hostUsers": host_users == "true"} if host_users in ("true", "false") else {}),
            "initContainers": [*copy.deepcopy(argo),
                               {"name": "kfp-launcher", "securityContext": dict(CONTAINER_DEFAULTS)}],
            "containers": [{"name": "main", "securityContext": main_sc}, *copy.deepcopy(wait)]}, cm.release))
    return out
