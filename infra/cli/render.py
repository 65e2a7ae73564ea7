"""`mlplat render --stack ENV --out DIR`: the Kubernetes manifests the program declares directly.

Writes `DIR/manifests/<namespace>/<kind>-<name>.yaml` for every Kubernetes resource declared with
pulumi_kubernetes (not what Helm charts render), `DIR/helm-releases.yaml` with each release's chart,
version, repository, namespace and values, and `DIR/kustomize/<overlay>/kustomization.yaml` for each
kustomize overlay the provider renders at `pulumi up` (Kubeflow Pipelines), for scanners and reviewers.
Secret values appear as "[secret]". `--validate` checks core kinds against the Kubernetes OpenAPI schemas
(kubernetes-validate); custom resources (ServiceMonitor, PrometheusRule, ...) are listed as skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stacks.config import ConfigError

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
KUSTOMIZE_TYPE = "kubernetes:kustomize/v2:Directory"
SECRET = "[secret]"
# API groups whose schemas kubernetes-validate ships (core Kubernetes); everything else is a CRD.
CORE_GROUPS = {"", "apps", "batch", "policy", "networking.k8s.io", "storage.k8s.io", "rbac.authorization.k8s.io",
               "autoscaling", "scheduling.k8s.io", "apiextensions.k8s.io"}


@dataclass
class Rendered:
    manifests: dict[Path, dict[str, Any]] = field(default_factory=dict)  # relative path -> manifest
    releases: list[dict[str, Any]] = field(default_factory=list)
    kustomizations: list[dict[str, Any]] = field(default_factory=list)  # directory (project-relative), namespace


def is_core(manifest: dict[str, Any]) -> bool:
    api = str(manifest.get("apiVersion", ""))
    group = api.rsplit("/", 1)[0] if "/" in api else ""
    return group in CORE_GROUPS


def render(resources: Iterable[Any]) -> Rendered:
    """Split synthesized resources into plain manifests and Helm release descriptions."""
    out = Rendered()
    for r in resources:
        if r.type == KUSTOMIZE_TYPE:
            out.kustomizations.append({"directory": r.inputs.get("directory"), "namespace": r.inputs.get("namespace")})
            continue
        if not r.custom or not r.type.startswith("kubernetes:") or r.type.startswith("pulumi:providers"):
            continue
        if r.type == RELEASE_TYPE:
            i = r.inputs
            out.releases.append({
                "name": i.get("name", r.name), "namespace": i.get("namespace"), "chart": i.get("chart"),
                "version": i.get("version"), "repository": (i.get("repositoryOpts") or {}).get("repo"),
                "values": i.get("values") or {},
            })
            continue
        manifest = {k: v for k, v in r.inputs.items() if k not in ("__defaults",)}
        for key in ("data", "stringData"):
            # pulumi_kubernetes marks a Secret's whole data map secret, so not even key names are known.
            if manifest.get(key) == SECRET:
                manifest[key] = {"redacted": SECRET}
        if "kind" not in manifest or "apiVersion" not in manifest:
            continue
        meta = manifest.get("metadata") or {}
        ns = meta.get("namespace") or "_cluster"
        path = Path(ns) / f"{manifest['kind'].lower()}-{meta.get('name', r.name)}.yaml"
        out.manifests[path] = manifest
    out.releases.sort(key=lambda rel: (rel["namespace"] or "", rel["name"]))
    return out


def validate(rendered: Rendered, kubernetes_version: str) -> tuple[list[str], list[Path]]:
    """Errors of core manifests against the schemas of `kubernetes_version`, and the skipped CRs."""
    import kubernetes_validate

    errors, skipped = [], []
    for path, manifest in sorted(rendered.manifests.items()):
        if not is_core(manifest):
            skipped.append(path)
            continue
        try:
            kubernetes_validate.validate(manifest, f"{kubernetes_version}.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{path}: {exc.message} at {'/'.join(str(p) for p in exc.path)}")
    return errors, skipped


def write(rendered: Rendered, out: Path) -> None:
    for path, manifest in rendered.manifests.items():
        target = out / "manifests" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(manifest, sort_keys=False))
    out.mkdir(parents=True, exist_ok=True)
    (out / "helm-releases.yaml").write_text(yaml.safe_dump({"releases": rendered.releases}, sort_keys=False))
    root = Path(__file__).resolve().parents[2]
    for k in rendered.kustomizations:
        overlay = root / str(k["directory"]) / "kustomization.yaml"
        if overlay.is_file():
            target = out / "kustomize" / Path(str(k["directory"])).name / "kustomization.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(overlay.read_text())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="write the Kubernetes manifests and Helm releases a stack declares")
    p.add_argument("--stack", required=True, choices=["dev", "staging", "prod"], help="stack to render")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--no-validate", dest="validate", action="store_false",
                   help="skip kubernetes-validate of core kinds")
    p.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    from infra.offline.synth import synthesize
    from stacks.config import from_flat_config
    from stacks.context import StackContext

    started = time.perf_counter()
    try:
        synthesis = synthesize(args.stack)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    rendered = render(synthesis.resources)
    write(rendered, args.out)
    print(f"{args.out}: {len(rendered.manifests)} manifests, {len(rendered.releases)} Helm releases "
          f"for stack {args.stack} in {time.perf_counter() - started:.1f}s")
    if not args.validate:
        return 0
    version = StackContext(from_flat_config(synthesis.config, source=args.stack)).kubernetes_version
    errors, skipped = validate(rendered, version)
    print(f"kubernetes-validate {version}: {len(rendered.manifests) - len(skipped)} core manifests checked, "
          f"{len(errors)} invalid; {len(skipped)} custom resources skipped")
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    return 1 if errors else 0
