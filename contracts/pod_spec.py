"""Pieces of pod specs every workload shares: labels, the restricted security contexts, a writable /tmp.

No Pulumi here: manifests rendered outside the program (the rollout Job of `mlplat rollout start --cluster`,
which runs in the ML environment) use the same pieces as the program (infra/workloads/kube.py re-exports them).
"""

from __future__ import annotations

from typing import Any

PART_OF = "mlplatform"


def labels(app: str, component: str | None = None, **extra: str) -> dict[str, str]:
    out = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": PART_OF,
           "app.kubernetes.io/managed-by": "pulumi"}
    if component:
        out["app.kubernetes.io/component"] = component
    return {**out, **extra}


# Non-root, no privilege escalation, read-only root, no capabilities: our own containers.
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# A writable /tmp for containers with a read-only root (an emptyDir, size-limited per workload).
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}


def tmp_volume(size: str) -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {"sizeLimit": size}}


def pod_security_context(uid: int = 10001) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}
