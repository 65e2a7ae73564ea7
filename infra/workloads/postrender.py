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


@dataclass(frozen=True)
class ContainerPatch:
    kind: str
    name: str
    container: str
    security_context: dict[str, Any]  # merged into the container's securityContext
    reason: str


PATCHES: dict[str, tuple[ContainerPatch, ...]] = {
    # seldon-core-v2-setup 2.10.2 `_components-deployments.tpl` writes the manager container's securityContext
    # as `allowPrivilegeEscalation: false` and nothing else; `restricted` also needs all capabilities dropped.
    "seldon-core-v2-setup": (
        ContainerPatch("Deployment", "seldon-v2-controller-manager", "manager", {"capabilities": {"drop": ["ALL"]}},
                       "the chart hard-codes the manager's securityContext without capabilities.drop"),
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
            containers = [c for key in ("initContainers", "containers") for c in pod.get(key) or []
                          if c.get("name") == patch.container]
            if not containers:
                raise PostRenderError(f"{release}: {patch.kind} {patch.name} has no container {patch.container}")
            for container in containers:
                container["securityContext"] = {**(container.get("securityContext") or {}),
                                                **patch.security_context}
    return yaml.safe_dump_all(documents, sort_keys=False)


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
