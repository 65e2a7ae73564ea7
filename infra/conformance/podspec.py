"""Pods as the kubelet would assemble them from the rendered objects: the pod templates of workloads,
each container's environment (envFrom, env with `$(VAR)` expansion, ConfigMap/Secret/field/resource
references), its volumes' files, and the scrape endpoints the monitors aim at it."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from infra.conformance.model import KubeObject
from infra.conformance.selectors import template_of

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet")
MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

# Secret value a redacted program Secret gets here: (namespace, name, key) -> value; with key "" the
# keys it has (a volume of the whole Secret), as a comma-separated list.
SecretSource = Callable[[str, str, str], str]


@dataclass
class PodTemplate:
    workload: KubeObject
    spec: dict[str, Any]
    labels: dict[str, str]
    claim_templates: list[str] = field(default_factory=list)  # StatefulSet volumeClaimTemplates names

    @property
    def namespace(self) -> str:
        return self.workload.namespace

    @property
    def ref(self) -> str:
        return self.workload.ref


def pod_templates(objects: list[KubeObject]) -> Iterator[PodTemplate]:
    for obj in objects:
        if obj.kind not in WORKLOADS:
            continue
        spec = obj.manifest.get("spec") or {}
        template = template_of(obj)
        claims = [str((c.get("metadata") or {}).get("name")) for c in spec.get("volumeClaimTemplates") or []]
        yield PodTemplate(obj, template.get("spec") or {}, dict((template.get("metadata") or {}).get("labels") or {}),
                          claims)


def memory_bytes(quantity: str) -> int:
    for unit, factor in MEMORY_UNITS.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(float(quantity))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` escapes, others stay."""
    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _VAR.sub(sub, text)


class References:
    """ConfigMaps and Secrets of the plan by namespace and name; redacted Secrets answered by `secrets`."""

    def __init__(self, objects: list[KubeObject], secrets: SecretSource) -> None:
        self._objects = {(o.kind, o.namespace, o.name): o for o in objects if o.kind in ("ConfigMap", "Secret")}
        self._secrets = secrets
        self.substituted: set[str] = set()  # "ns/name key": Secret values made up here
        self.secret_values: set[str] = set()  # every Secret value handed to a container (left out of cache keys)

    def keys(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            return None
        out: dict[str, str] = {}
        for key, value in (obj.manifest.get("data") or {}).items():
            out[key] = base64.b64decode(str(value)).decode() if kind == "Secret" else str(value)
        for key, value in (obj.manifest.get("binaryData") or {}).items():
            out[key] = base64.b64decode(str(value)).decode(errors="replace")
        out.update({k: str(v) for k, v in (obj.manifest.get("stringData") or {}).items()})
        if kind == "Secret":
            self.secret_values.update(v for v in out.values() if len(v) >= 8)
        return out

    def value(self, kind: str, namespace: str, name: str, key: str) -> str | None:
        values = self.keys(kind, namespace, name)
        if values is None:
            return None
        if key in values:
            return values[key]
        if kind == "Secret" and not values and self.redacted(namespace, name):
            self.substituted.add(f"{namespace}/{name} {key}")
            made = self._secrets(namespace, name, key)
            if len(made) >= 8:
                self.secret_values.add(made)
            return made
        return None

    def redacted(self, namespace: str, name: str) -> bool:
        """A Secret the program declares: its values are secret outputs, absent from the plan."""
        obj = self._objects.get(("Secret", namespace, name))
        return obj is not None and obj.release is None and not obj.derived

    def secret_files(self, namespace: str, name: str, wanted: list[str]) -> dict[str, str] | None:
        values = self.keys("Secret", namespace, name)
        if values is None:
            return None
        if not values and self.redacted(namespace, name):
            keys = wanted or [k for k in self._secrets(namespace, name, "").split(",") if k]
            return {k: self.value("Secret", namespace, name, k) or "" for k in keys}
        return values


class UnresolvedReference(ValueError):
    """A reference that the kubelet could not resolve either (the container would not start)."""


def container_env(pod: PodTemplate, container: dict[str, Any], refs: References,
                  pod_ip: str, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if not ref:
                continue
            values = refs.keys(kind, pod.namespace, str(ref.get("name")))
            if values is None:
                if ref.get("optional"):
                    continue
                raise UnresolvedReference(f"envFrom {kind} {ref.get('name')} does not exist")
            env.update({prefix + k: v for k, v in values.items()})
    for item in container.get("env") or []:
        name = str(item["name"])
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[name] = {"metadata.name": f"{pod.workload.name}-0", "metadata.namespace": pod.namespace,
                         "status.podIP": pod_ip, "spec.nodeName": "node", "status.hostIP": pod_ip,
                         "spec.serviceAccountName": str(pod.spec.get("serviceAccountName") or "default")}.get(path, "")
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            target = next((c for c in pod.spec.get("containers") or []
                           if c.get("name") == ref.get("containerName", container.get("name"))), container)
            kind, res = str(ref["resource"]).split(".", 1)
            quantity = str(((target.get("resources") or {}).get(kind) or {}).get(res, "0"))
            env[name] = str(memory_bytes(quantity)) if res == "memory" else quantity
        else:
            kind, key = ("ConfigMap", "configMapKeyRef") if "configMapKeyRef" in source else ("Secret", "secretKeyRef")
            ref = source[key]
            value = refs.value(kind, pod.namespace, str(ref["name"]), str(ref["key"]))
            if value is None:
                if ref.get("optional"):
                    continue
                raise UnresolvedReference(f"env {name}: {kind} {ref['name']} key {ref['key']} does not exist")
            env[name] = value
    return env


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str  # emptyDir | files | claim
    files: dict[str, str] = field(default_factory=dict)  # files: relative path -> content
    mode: int = 0o644
    size_limit: str | None = None


def _items(values: dict[str, str], items: list[dict[str, Any]] | None) -> dict[str, str]:
    if not items:
        return dict(values)
    return {str(i.get("path") or i["key"]): values[i["key"]] for i in items if i["key"] in values}


def pod_volumes(pod: PodTemplate, refs: References, token: str) -> dict[str, Volume]:
    """The pod's volumes by name; hostPath and other node-bound kinds raise UnresolvedReference."""
    out: dict[str, Volume] = {}
    for claim in pod.claim_templates:
        out[claim] = Volume(claim, "claim")
    for vol in pod.spec.get("volumes") or []:
        name = str(vol["name"])
        if "emptyDir" in vol:
            out[name] = Volume(name, "emptyDir", size_limit=(vol["emptyDir"] or {}).get("sizeLimit"))
        elif "persistentVolumeClaim" in vol or "ephemeral" in vol:
            out[name] = Volume(name, "claim")
        elif "configMap" in vol or "secret" in vol:
            # optional and absent: the kubelet mounts an empty directory
            files = _source_files(pod, refs, vol) or {}
            mode = int(((vol.get("configMap") or vol.get("secret") or {}).get("defaultMode")) or 0o644)
            out[name] = Volume(name, "files", files, mode)
        elif "projected" in vol:
            files = {}
            for source in vol["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    files[str(source["serviceAccountToken"].get("path", "token"))] = token
                else:
                    files.update(_source_files(pod, refs, source) or {})
            out[name] = Volume(name, "files", files, int(vol["projected"].get("defaultMode") or 0o644))
        elif "downwardAPI" in vol:
            out[name] = Volume(name, "files", {str(i["path"]): "" for i in vol["downwardAPI"].get("items") or []})
        else:
            kinds = ", ".join(k for k in vol if k != "name")
            raise UnresolvedReference(f"volume {name} ({kinds}) is bound to a node and cannot be made here")
    return out


def _source_files(pod: PodTemplate, refs: References, source: dict[str, Any]) -> dict[str, str] | None:
    if "configMap" in source:
        ref = source["configMap"]
        values = refs.keys("ConfigMap", pod.namespace, str(ref.get("name")))
    else:
        ref = source["secret"]
        name = str(ref.get("secretName") or ref.get("name"))
        wanted = [str(i["key"]) for i in ref.get("items") or []]
        values = refs.secret_files(pod.namespace, name, wanted)
    if values is None:
        if ref.get("optional"):
            return None
        raise UnresolvedReference(f"volume source {ref} does not exist")
    return _items(values, ref.get("items"))


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


@dataclass(frozen=True)
class ScrapeTarget:
    monitor: str  # "ServiceMonitor ns/name endpoints[0]"
    container: str
    port: int
    path: str
    scheme: str
    basic_auth: tuple[str, str] | None
    bearer: str | None


def _in_namespace(monitor: KubeObject, namespace: str) -> bool:
    ns_sel = (monitor.manifest.get("spec") or {}).get("namespaceSelector") or {}
    if ns_sel.get("any"):
        return True
    return namespace in (ns_sel.get("matchNames") or [monitor.namespace])


def _container_port(pod: PodTemplate, port: Any) -> tuple[str, int] | None:
    containers = pod.spec.get("containers") or []
    for container in containers:
        for p in container.get("ports") or []:
            if port in (p.get("name"), p.get("containerPort")) or str(port) == str(p.get("containerPort")):
                return str(container["name"]), int(p["containerPort"])
    # A numeric targetPort reaches the pod whether or not a container declares it (the first container's, here).
    if str(port).isdigit() and containers:
        return str(containers[0]["name"]), int(port)
    return None


def _secret_key(refs: References, namespace: str, ref: dict[str, Any] | None) -> str | None:
    if not ref:
        return None
    return refs.value("Secret", namespace, str(ref.get("name")), str(ref.get("key")))


def scrape_targets(pod: PodTemplate, objects: list[KubeObject], refs: References) -> list[ScrapeTarget]:
    """The endpoints Prometheus would scrape on this pod: PodMonitors selecting it, and ServiceMonitors
    selecting a Service that selects it (the endpoint's `port` is the Service port's name, `targetPort`
    the container's)."""
    out: list[ScrapeTarget] = []
    services = [o for o in objects if o.kind == "Service" and o.namespace == pod.namespace
                and (o.manifest.get("spec") or {}).get("selector")
                and selects({"matchLabels": o.manifest["spec"]["selector"]}, pod.labels)]
    for monitor in objects:
        if monitor.kind not in ("PodMonitor", "ServiceMonitor") or monitor.api_version != "monitoring.coreos.com/v1":
            continue
        spec = monitor.manifest.get("spec") or {}
        if not _in_namespace(monitor, pod.namespace):
            continue
        key = "podMetricsEndpoints" if monitor.kind == "PodMonitor" else "endpoints"
        for i, ep in enumerate(spec.get(key) or []):
            ports: list[Any] = []
            if monitor.kind == "PodMonitor":
                if not selects(spec.get("selector"), pod.labels):
                    continue
                ports = [ep.get("port") or ep.get("portNumber") or ep.get("targetPort")]
            else:
                for svc in services:
                    if not selects(spec.get("selector"), svc.labels):
                        continue
                    if ep.get("targetPort") is not None:
                        ports.append(ep["targetPort"])
                    for sp in svc.manifest["spec"].get("ports") or []:
                        if ep.get("port") is not None and sp.get("name") == ep.get("port"):
                            ports.append(sp.get("targetPort", sp.get("port")))
            for port in ports:
                found = _container_port(pod, port)
                if found is None:
                    continue
                auth = ep.get("basicAuth")
                basic = None
                if auth:
                    basic = (_secret_key(refs, monitor.namespace, auth.get("username")) or "",
                             _secret_key(refs, monitor.namespace, auth.get("password")) or "")
                bearer = _secret_key(refs, monitor.namespace, ep.get("bearerTokenSecret")) or _secret_key(
                    refs, monitor.namespace, (ep.get("authorization") or {}).get("credentials"))
                out.append(ScrapeTarget(f"{monitor.ref} {key}[{i}]", found[0], found[1],
                                        str(ep.get("path") or "/metrics"),
                                        str(ep.get("scheme") or "http"), basic, bearer))
    return out
