"""What a preview-shaped plan (`mlplat synth`) declares for Kubernetes: the Helm releases with their
values, the program's own objects, the dependency graph and the stack's Kubernetes version."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from infra.conformance.model import KubeObject

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
KUSTOMIZE_TYPE = "kubernetes:kustomize/v2:Directory"
CLUSTER_TYPE = "aws:eks/cluster:Cluster"
VPC_TYPE = "aws:ec2/vpc:Vpc"
SECRET = "[secret]"


@dataclass
class Release:
    urn: str
    name: str
    namespace: str
    chart: str
    version: str
    repository: str | None
    values: dict[str, Any]
    skip_crds: bool = False
    postrender: str | None = None  # the executable Helm pipes the manifests through, relative to the project

    @property
    def archive(self) -> str:
        return f"{self.chart}-{self.version}.tgz"


@dataclass
class Kustomization:
    urn: str
    directory: str  # the overlay, relative to the project directory
    namespace: str


@dataclass
class Plan:
    stack: str
    kubernetes_version: str
    releases: list[Release]
    objects: list[KubeObject]  # the program's own Kubernetes objects
    dependencies: dict[str, list[str]] = field(default_factory=dict)  # urn -> urns it depends on
    types: dict[str, str] = field(default_factory=dict)  # urn -> resource type
    kustomizations: list[Kustomization] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # urn -> inputs of every resource
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # urn -> the step's newState (AWS checks)
    vpc_cidr: str = ""  # pod addresses come from it (VPC CNI)

    @classmethod
    def from_preview(cls, plan: dict[str, Any]) -> Plan:
        states = [step["newState"] for step in plan.get("steps", [])]
        return cls.from_states(str(plan.get("stack", "")), states)

    @classmethod
    def from_states(cls, stack: str, states: Iterable[dict[str, Any]]) -> Plan:
        releases: list[Release] = []
        objects: list[KubeObject] = []
        deps: dict[str, list[str]] = {}
        types: dict[str, str] = {}
        kustomizations: list[Kustomization] = []
        all_inputs: dict[str, dict[str, Any]] = {}
        version = ""
        by_urn: dict[str, dict[str, Any]] = {}
        vpc_cidr = ""
        for st in states:
            urn, type_, inputs = st["urn"], st["type"], st.get("inputs") or {}
            by_urn[urn] = st
            deps[urn] = list(st.get("dependencies") or [])
            types[urn] = type_
            all_inputs[urn] = inputs
            if type_ == CLUSTER_TYPE:
                version = str(inputs.get("version") or version)
            if type_ == VPC_TYPE:
                vpc_cidr = str(inputs.get("cidrBlock") or vpc_cidr)
            if type_ == KUSTOMIZE_TYPE:
                kustomizations.append(Kustomization(urn, str(inputs.get("directory")),
                                                    str(inputs.get("namespace") or "default")))
                continue
            if not st.get("custom") or not type_.startswith("kubernetes:"):
                continue
            if type_ == RELEASE_TYPE:
                releases.append(Release(
                    urn=urn, name=str(inputs.get("name") or urn.rsplit("::", 1)[-1]),
                    namespace=str(inputs.get("namespace") or "default"), chart=str(inputs["chart"]),
                    version=str(inputs["version"]), repository=(inputs.get("repositoryOpts") or {}).get("repo"),
                    values=dict(inputs.get("values") or {}), skip_crds=bool(inputs.get("skipCrds", False)),
                    postrender=inputs.get("postrender") or None))
                continue
            manifest = {k: v for k, v in inputs.items() if k != "__defaults"}
            if "kind" not in manifest or "apiVersion" not in manifest:
                continue
            for key in ("data", "stringData"):
                # pulumi_kubernetes marks a Secret's whole data map secret: not even the key names are known.
                if manifest.get(key) == SECRET:
                    manifest[key] = {}
            objects.append(KubeObject(manifest, origin="plan " + urn.rsplit("::", 1)[-1], urn=urn))
        if not version:
            raise ValueError(f"plan of stack {stack!r} has no {CLUSTER_TYPE} with a version")
        return cls(stack, version, releases, objects, deps, types, kustomizations, all_inputs, by_urn, vpc_cidr)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        """Inputs of every resource of one type (AWS resources included)."""
        return [self.inputs.get(urn, {}) for urn, t in self.types.items() if t == type_]

    def depends_on(self, urn: str, target: str) -> bool:
        """Whether `urn` depends on `target` directly or through other resources' dependencies."""
        seen, todo = set(), list(self.dependencies.get(urn, []))
        while todo:
            current = todo.pop()
            if current == target:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(self.dependencies.get(current, []))
        return False

    def release(self, name: str) -> Release:
        return next(r for r in self.releases if r.name == name)
