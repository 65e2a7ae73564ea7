"""What `.Capabilities` a release sees when `pulumi up` installs it.

Helm fills `.Capabilities.APIVersions` from the cluster's discovery (every served `group/version` and
`group/version/Kind`) and `.Capabilities.KubeVersion` from the server's version, after it has applied the
chart's own `crds/` folder (helm/helm `pkg/action/install.go`: the CRDs go in before the capabilities are
read). Rendering offline with Helm's defaults instead hides every template gated on a custom API (a
ServiceMonitor behind `monitoring.coreos.com/v1`) and uses the library's own Kubernetes version.

The set for one release is:

- the built-in APIs of the stack's Kubernetes version that an API server serves by default: the GA
  `group/version`s of that version's OpenAPI (kubernetes-validate's files) with their kinds; beta APIs
  are off by default since Kubernetes 1.24 (KEP-3136, kubernetes/enhancements
  `keps/sig-architecture/3136-beta-apis-off-by-default`);
- the CRDs (served versions, with kinds) and aggregated APIs (`APIService`) of the releases it depends
  on in the plan's dependency graph, directly or through other resources: only those are certain to
  exist when it installs;
- the CRDs of its own chart's `crds/` folders (unless `skipCrds`).

helm-python's native render takes `api_versions` and `kube_version` options; the API versions are added
to the library's built-in default set (group/versions of the Kubernetes client Helm is built with, no
kinds), which can answer `Has "<group>/<version>"` for a version the stack's cluster no longer serves.
`stale_gates` names such gates in a chart so that the report says where the offline render can differ.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from infra.conformance.model import KubeObject
from infra.conformance.plan import Plan, Release

_GA = re.compile(r"^v\d+$")
# Types the OpenAPI registers in every group/version that are not resources the API server lists.
_NOT_RESOURCES = {"DeleteOptions", "WatchEvent", "Status", "APIGroup", "APIGroupList", "APIResourceList",
                  "APIVersions"}
# Review/request types of these groups are not served as resources (the API server sends them to webhooks).
_NOT_SERVED_GROUPS = {"admission.k8s.io", "imagepolicy.k8s.io"}
_HAS = re.compile(r"""\.Capabilities\.APIVersions\.Has\s+"([^"]+)\"""")


@dataclass(frozen=True)
class Capabilities:
    kube_version: str  # as Helm's KubeVersion.Version: v<major>.<minor>.0
    api_versions: frozenset[str]

    def options(self) -> dict[str, Any]:
        """The render options helm-python's native engine reads."""
        return {"api_versions": sorted(self.api_versions), "kube_version": self.kube_version}

    def has(self, version: str) -> bool:
        return version in self.api_versions


def kube_version(kubernetes_version: str) -> str:
    """`1.34` (the stack's `cluster.kubernetesVersion`) -> `v1.34.0`."""
    parts = str(kubernetes_version).lstrip("v").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise ValueError(f"Kubernetes version {kubernetes_version!r} is not <major>.<minor>")
    patch = parts[2] if len(parts) > 2 and parts[2].isdigit() else "0"
    return f"v{parts[0]}.{parts[1]}.{patch}"


def _definitions(kubernetes_version: str) -> dict[str, Any]:
    from infra.conformance.schemas import core_schemas

    data = json.loads((Path(core_schemas(kubernetes_version).dir) / "_definitions.json").read_text())
    return data.get("$defs") or data.get("definitions") or {}


@lru_cache(maxsize=4)
def builtin_api_versions(kubernetes_version: str) -> frozenset[str]:
    """`group/version` and `group/version/Kind` of every GA resource of the version's OpenAPI."""
    out: set[str] = set()
    for schema in _definitions(kubernetes_version).values():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            group, version, kind = gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")
            if not _GA.match(version) or group in _NOT_SERVED_GROUPS or kind in _NOT_RESOURCES \
                    or kind.endswith("List"):
                continue
            gv = f"{group}/{version}" if group else version
            out.update({gv, f"{gv}/{kind}"})
    if not out:
        raise LookupError(f"no API versions found for Kubernetes {kubernetes_version}")
    return frozenset(out)


def api_versions_of(objects: Iterable[KubeObject]) -> set[str]:
    """What CRDs (served versions) and APIServices add to discovery once they are applied."""
    out: set[str] = set()
    for obj in objects:
        spec = obj.manifest.get("spec") or {}
        if obj.kind == "CustomResourceDefinition":
            group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
            for version in spec.get("versions") or []:
                if version.get("served", True) and group and kind:
                    out.update({f"{group}/{version['name']}", f"{group}/{version['name']}/{kind}"})
        elif obj.kind == "APIService" and spec.get("group") and spec.get("version"):
            out.add(f"{spec['group']}/{spec['version']}")
    return out


def for_release(plan: Plan, release: Release, own_crds: Iterable[KubeObject],
                installed: dict[str, list[KubeObject]]) -> Capabilities:
    """The capabilities `release` sees: built-ins, its own crds/, and what the releases it depends on
    (`installed`: release name -> the CRDs and APIServices it applies) add."""
    versions = set(builtin_api_versions(plan.kubernetes_version))
    if not release.skip_crds:
        versions |= api_versions_of(own_crds)
    for other in plan.releases:
        if other.name != release.name and plan.depends_on(release.urn, other.urn):
            versions |= api_versions_of(installed.get(other.name, []))
    return Capabilities(kube_version(plan.kubernetes_version), frozenset(versions))


_PROBE_CHART = {
    "probe/Chart.yaml": "apiVersion: v2\nname: probe\nversion: 0.0.0\n",
    "probe/templates/caps.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
                                 "data: {versions: {{ toJson .Capabilities.APIVersions | quote }}}\n",
}


@lru_cache(maxsize=1)
def helm_default_api_versions() -> frozenset[str]:
    """The API versions helm-python's engine answers without being told (a probe chart renders them)."""
    import yaml
    from helm_python.chart import Chart

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in _PROBE_CHART.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with Chart.load_archive(buffer.getvalue()) as chart:
        rendered = chart.render({}, name="probe", namespace="default")
    manifest = yaml.safe_load(next(iter(rendered.values())))
    return frozenset(json.loads(manifest["data"]["versions"]))


def stale_gates(templates: Iterable[dict[str, str]], caps: Capabilities, helm_defaults: Iterable[str]) -> list[str]:
    """`Has` arguments in the chart's template sources that Helm's built-in defaults answer true but the
    stack's cluster does not serve: where an offline render can differ from the real install."""
    defaults = set(helm_defaults)
    found = []
    for template in templates:
        for version in _HAS.findall(str(template.get("data", ""))):
            if version in defaults and not caps.has(version):
                found.append(f"{template.get('name')}: Has {version!r}")
    return sorted(set(found))


def creation_order(plan: Plan) -> list[Release]:
    """The plan's releases, each after every release it depends on (plan order among independent ones)."""
    done: list[Release] = []
    pending = list(plan.releases)
    while pending:
        ready = [r for r in pending
                 if not any(plan.depends_on(r.urn, o.urn) for o in pending if o is not r)]
        if not ready:  # a dependency cycle: the engine would refuse the plan; keep the rest in plan order
            ready = pending[:1]
        for r in ready:
            pending.remove(r)
        done.extend(ready)
    return done


def notes(rendered: Iterable[Any], charts: dict[str, Any]) -> list[str]:
    """One note per release whose templates test an API version that only the engine's defaults have."""
    out = []
    for r in rendered:
        if r.capabilities is None:
            continue
        for gate in stale_gates(charts[r.release.name].templates, r.capabilities, helm_default_api_versions()):
            out.append(f"release {r.release.name}: {gate} is true offline (Helm's built-in defaults) but Kubernetes "
                       f"{r.capabilities.kube_version} does not serve it: the real install takes the other branch")
    return out
