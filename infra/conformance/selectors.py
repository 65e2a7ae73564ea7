"""The objects the wiring checks see, and Kubernetes selector semantics over them.

Besides what the plan declares and the releases render, the index holds the workloads operators make
(`operators`) and objects that exist on every cluster or are made at run time, which
`external-objects.yaml` declares with a reason; they take part in selection like rendered ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.conformance.model import KubeObject, Problem

EXTERNAL = Path(__file__).with_name("external-objects.yaml")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


def load_external(path: Path = EXTERNAL) -> list[KubeObject]:
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    out = []
    for entry in (data or {}).get("objects") or []:
        if not str(entry.get("reason") or "").strip():
            raise ValueError(f"{path.name}: {entry.get('manifest')} has no reason")
        out.append(KubeObject(entry["manifest"], origin=f"external: {entry['reason']}", derived=True))
    return out


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), [str(v) for v in expr.get("values") or []]
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class PodTemplate:
    owner: KubeObject
    namespace: str
    labels: dict[str, str]
    spec: dict[str, Any]

    @property
    def containers(self) -> list[dict[str, Any]]:
        return [*(self.spec.get("initContainers") or []), *(self.spec.get("containers") or [])]

    def port_names(self) -> set[str]:
        return {str(p.get("name")) for c in self.containers for p in c.get("ports") or [] if p.get("name")}

    def port_numbers(self) -> set[int]:
        return {int(p["containerPort"]) for c in self.containers for p in c.get("ports") or []
                if isinstance(p.get("containerPort"), int)}


def template_of(obj: KubeObject) -> dict[str, Any]:
    """The pod template of a workload (a Pod is its own template): metadata and spec."""
    spec = obj.manifest.get("spec") or {}
    if obj.kind == "Pod":
        return {"metadata": obj.manifest.get("metadata") or {}, "spec": spec}
    if obj.kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    return spec.get("template") or {}


def pod_templates(objects: list[KubeObject]) -> list[PodTemplate]:
    out = []
    for obj in objects:
        if obj.kind not in WORKLOAD_KINDS:
            continue
        template = template_of(obj)
        meta = template.get("metadata") or {}
        out.append(PodTemplate(obj, obj.namespace, dict(meta.get("labels") or {}), template.get("spec") or {}))
    return out


def namespace_scope(selector: dict[str, Any] | None, own: str, namespaces: dict[str, dict[str, str]]) -> set[str]:
    """namespaceSelector of a monitor: `any`, `matchNames`, or (absent) the monitor's own namespace."""
    selector = selector or {}
    if selector.get("any"):
        return set(namespaces)
    if selector.get("matchNames"):
        return set(selector["matchNames"])
    return {own}


class Index:
    def __init__(self, objects: list[KubeObject]) -> None:
        self.objects = objects
        self.pods = pod_templates(objects)
        self.namespaces: dict[str, dict[str, str]] = {}
        for o in objects:
            if o.kind == "Namespace":
                self.namespaces[o.name] = {**o.labels, "kubernetes.io/metadata.name": o.name}
        for o in objects:
            if o.namespace and o.namespace not in self.namespaces:
                self.namespaces[o.namespace] = {"kubernetes.io/metadata.name": o.namespace}

    def of_kind(self, kind: str, namespace: str | None = None) -> list[KubeObject]:
        return [o for o in self.objects if o.kind == kind and (namespace is None or o.namespace == namespace)]

    def find(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return next((o for o in self.objects if o.kind == kind and o.namespace == namespace and o.name == name),
                    None)

    def pods_in(self, namespace: str, selector: dict[str, Any] | None) -> list[PodTemplate]:
        return [p for p in self.pods if p.namespace == namespace and matches(selector, p.labels)]


def problem(obj: KubeObject, message: str) -> Problem:
    return Problem("wiring", obj.where, message, obj.release)
