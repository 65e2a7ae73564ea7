"""Helm post-renderer for settings that a pinned chart hard-codes and no value reaches.

Helm pipes a release's rendered manifests through the post-renderer before it applies them
(`k8s.helm.v3.Release(postrender=...)`); `scripts/helm-postrender-<release>` runs this module with the
release's name, reading the manifests on stdin and writing them, patched, to stdout. `mlplat conform`
runs the same script over its own render, so the Pod Security check sees what the cluster will get.

Only the objects and containers named in PATCHES change, and a patch that finds no object or container
fails the render (a chart upgrade that renamed it must not silently drop the fix).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import yaml

from infra.workloads.rds_tls import COPY_CONTAINER, ca_mount, libpq_env


@dataclass(frozen=True)
class ContainerPatch:
    kind: str
    name: str
    container: str
    security_context: dict[str, Any]  # merged into the container's securityContext
    reason: str


@dataclass(frozen=True)
class RdsClientPatch:
    """A chart container that connects to RDS but takes no environment from values: it gets the TLS settings of
    infra/workloads/rds_tls.py and the bundle's volume, and the pod's `rds-ca` init container (from values, which
    the chart renders after its own init containers) moves first, so the bundle is there when this one starts."""

    kind: str
    name: str
    container: str
    reason: str


Patch = ContainerPatch | RdsClientPatch

PATCHES: dict[str, tuple[Patch, ...]] = {
    # seldon-core-v2-setup 2.10.2 `_components-deployments.tpl` writes the manager container's securityContext
    # as `allowPrivilegeEscalation: false` and nothing else; `restricted` also needs all capabilities dropped.
    "seldon-core-v2-setup": (
        ContainerPatch("Deployment", "seldon-v2-controller-manager", "manager", {"capabilities": {"drop": ["ALL"]}},
                       "the chart hard-codes the manager's securityContext without capabilities.drop"),
    ),
    # mlflow 1.11.5 `deployment.yaml`: `mlflow-db-migration` reads only the chart's env ConfigMap and Secrets.
    "mlflow": (
        RdsClientPatch("Deployment", "mlflow", "mlflow-db-migration",
                       "the chart's migration init container connects to RDS and no value reaches its environment"),
    ),
}


class PostRenderError(Exception):
    """A patch found nothing to patch."""


def apply(text: str, release: str) -> str:
    patches = PATCHES.get(release)
    if patches is None:
        raise PostRenderError(f"no post-render patches for release {release!r} (known: {', '.join(PATCHES)})")
    documents = [d for d in yaml.safe_load_all(text) if d]
    for patch in patches:
        targets = [d for d in documents if d.get("kind") == patch.kind
                   and (d.get("metadata") or {}).get("name") == patch.name]
        if not targets:
            raise PostRenderError(f"{release}: no {patch.kind} {patch.name} in the rendered chart")
        for target in targets:
            pod = ((target.get("spec") or {}).get("template") or {}).get("spec") or {}
            if isinstance(patch, RdsClientPatch):
                _rds_client(pod, patch, release)
                continue
            containers = [c for key in ("initContainers", "containers") for c in pod.get(key) or []
                          if c.get("name") == patch.container]
            if not containers:
                raise PostRenderError(f"{release}: {patch.kind} {patch.name} has no container {patch.container}")
            for container in containers:
                container["securityContext"] = {**(container.get("securityContext") or {}),
                                                **patch.security_context}
    return yaml.safe_dump_all(documents, sort_keys=False)


def _rds_client(pod: dict[str, Any], patch: RdsClientPatch, release: str) -> None:
    init = pod.get("initContainers") or []
    copy = [c for c in init if c.get("name") == COPY_CONTAINER]
    clients = [c for c in init + (pod.get("containers") or []) if c.get("name") == patch.container]
    if not copy:
        raise PostRenderError(f"{release}: {patch.kind} {patch.name} has no init container {COPY_CONTAINER} (values "
                              "initContainers)")
    if not clients:
        raise PostRenderError(f"{release}: {patch.kind} {patch.name} has no container {patch.container}")
    pod["initContainers"] = copy + [c for c in init if c.get("name") != COPY_CONTAINER]
    settings = libpq_env()
    for container in clients:
        names = {e["name"] for e in settings}
        container["env"] = [e for e in container.get("env") or [] if e.get("name") not in names] + settings
        mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != ca_mount()["name"]]
        container["volumeMounts"] = [*mounts, ca_mount()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m infra.workloads.postrender RELEASE < manifests", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(apply(sys.stdin.read(), args[0]))
    except PostRenderError as exc:
        print(f"post-render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
