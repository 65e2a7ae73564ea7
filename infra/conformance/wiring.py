"""Wiring across objects (the plan's, the releases' and the operators'; see `selectors`):

- monitors have targets (`monitors`);
- every NetworkPolicy selects pods that exist, and every namespace a rule names exists;
- every metric an alert rule or dashboard of the program queries is exported by a scrape target
  (`exporters.yaml` says which monitor scrapes it) whose monitor has targets;
- every Secret, ConfigMap and ServiceAccount a pod template references exists (with the key, when
  the object's keys are known);
- retention jobs (Jaeger's es-index-cleaner) work on the indices the collector writes.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from infra.conformance import monitors as monitor_checks
from infra.conformance.model import KubeObject, Problem
from infra.conformance.selectors import Index, problem

EXPORTERS = Path(__file__).with_name("exporters.yaml")
DASHBOARD_LABEL = "grafana_dashboard"


# ---------------------------------------------------------------- network policies

def network_policies(idx: Index) -> list[Problem]:
    problems = []
    for pol in idx.of_kind("NetworkPolicy"):
        spec = pol.manifest.get("spec") or {}
        if not idx.pods_in(pol.namespace, spec.get("podSelector")):
            problems.append(problem(pol, f"spec.podSelector {json.dumps(spec.get('podSelector') or {})} selects no "
                                          f"pods in namespace {pol.namespace}"))
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(spec.get(direction) or []):
                for j, peer in enumerate(rule.get(peers_key) or []):
                    named = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get(
                        "kubernetes.io/metadata.name")
                    if named and named not in idx.namespaces:
                        problems.append(problem(pol, f"spec.{direction}.{i}.{peers_key}.{j}: namespace {named!r} "
                                                      "is neither in the plan nor a known cluster namespace"))
    return problems


# ---------------------------------------------------------------- references

def pod_references(spec: dict[str, Any]) -> Iterator[tuple[str, str, str | None, str]]:
    """(kind, name, key or None, where) for every Secret/ConfigMap/ServiceAccount a pod spec needs."""
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if sa and sa != "default":
        yield "ServiceAccount", sa, None, "serviceAccountName"
    for s in spec.get("imagePullSecrets") or []:
        yield "Secret", s.get("name"), None, "imagePullSecrets"
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    for c in containers:
        where = f"container {c.get('name')}"
        for env in c.get("env") or []:
            source = env.get("valueFrom") or {}
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = source.get(key)
                if ref and not ref.get("optional"):
                    yield kind, ref.get("name"), ref.get("key"), f"{where} env {env.get('name')}"
        for env in c.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                ref = env.get(key)
                if ref and not ref.get("optional"):
                    yield kind, ref.get("name"), None, f"{where} envFrom"
    for vol in spec.get("volumes") or []:
        where = f"volume {vol.get('name')}"
        if vol.get("secret") and not vol["secret"].get("optional"):
            yield "Secret", vol["secret"].get("secretName"), None, where
        if vol.get("configMap") and not vol["configMap"].get("optional"):
            yield "ConfigMap", vol["configMap"].get("name"), None, where
        for src in (vol.get("projected") or {}).get("sources") or []:
            for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                ref = src.get(key)
                if ref and not ref.get("optional"):
                    for item in ref.get("items") or [{}]:
                        yield kind, ref.get("name"), item.get("key"), where


def _keys(obj: KubeObject) -> set[str] | None:
    keys: set[str] = set()
    for field in ("data", "stringData", "binaryData"):
        value = obj.manifest.get(field)
        if isinstance(value, dict):
            keys |= set(value)
    return keys or None  # unknown (redacted secret) or empty


def references(idx: Index) -> list[Problem]:
    problems = []
    for pod in idx.pods:
        for kind, name, key, where in pod_references(pod.spec):
            if not name:
                continue
            target = idx.find(kind, pod.namespace, name)
            if target is None:
                problems.append(problem(pod.owner, f"{where} references {kind} {pod.namespace}/{name}, which is "
                                                    "neither in the plan nor rendered by a release"))
            elif key and (keys := _keys(target)) is not None and key not in keys:
                problems.append(problem(pod.owner, f"{where} references key {key!r} of {kind} "
                                                    f"{pod.namespace}/{name}, which has only {sorted(keys)}"))
    return problems


# ---------------------------------------------------------------- metrics

def queries(objects: list[KubeObject]) -> Iterator[tuple[KubeObject, str]]:
    """PromQL of the program's own alert rules and Grafana dashboards (rendered charts bring their own)."""
    for obj in objects:
        if obj.release is not None or obj.derived:
            continue
        if obj.kind == "PrometheusRule":
            for group in (obj.manifest.get("spec") or {}).get("groups") or []:
                for rule in group.get("rules") or []:
                    yield obj, str(rule.get("expr", ""))
        if obj.kind == "ConfigMap" and obj.labels.get(DASHBOARD_LABEL):
            for text in (obj.manifest.get("data") or {}).values():
                try:
                    board = json.loads(text)
                except (TypeError, ValueError):
                    continue
                for panel in _panels(board):
                    for target in panel.get("targets") or []:
                        if target.get("expr"):
                            yield obj, str(target["expr"])


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels") or []:
        yield panel
        yield from _panels(panel)


def load_exporters(path: Path = EXPORTERS) -> list[dict[str, Any]]:
    return list((yaml.safe_load(path.read_text()) or {}).get("exporters") or [])


def metrics(idx: Index, healthy: dict[str, bool], exporters: list[dict[str, Any]]) -> list[Problem]:
    from contracts.metrics_catalog import metric_names

    problems = []
    for obj, expr in queries(idx.objects):
        for metric in sorted(metric_names(expr)):
            entry = next((e for e in exporters if any(fnmatch.fnmatchcase(metric, p) for p in e["metrics"])), None)
            if entry is None:
                problems.append(problem(obj, f"queries {metric!r}, which no exporter in {EXPORTERS.name} exports"))
                continue
            monitors_ = entry.get("monitors") or []
            if monitors_ and not any(healthy.get(m) for m in monitors_):
                problems.append(problem(obj, f"queries {metric!r}, exported by {entry['exporter']}, but none of its "
                                              f"scrape monitors {monitors_} exists with targets"))
    return problems


# ---------------------------------------------------------------- retention jobs

_JAEGER_CLEANER = re.compile(r"jaeger-es-(index-cleaner|rollover)")


def _flag(container: dict[str, Any], flag: str, env: str) -> str:
    for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
        if str(arg).startswith(f"--{flag}="):
            return str(arg).split("=", 1)[1]
    for item in container.get("env") or []:
        if item.get("name") == env and "value" in item:
            return str(item["value"])
    return ""


def _jaeger_prefixes(idx: Index, namespace: str) -> set[str]:
    """index_prefix of every Elasticsearch/OpenSearch backend in the Jaeger v2 configs of a namespace."""
    prefixes: set[str] = set()
    for cm in idx.of_kind("ConfigMap", namespace):
        for text in (cm.manifest.get("data") or {}).values():
            if "jaeger_storage" not in str(text):
                continue
            try:
                config = yaml.safe_load(text) or {}
            except yaml.YAMLError:
                continue
            backends = ((config.get("extensions") or {}).get("jaeger_storage") or {}).get("backends") or {}
            for backend in backends.values():
                for engine in ("elasticsearch", "opensearch"):
                    if engine in (backend or {}):
                        indices = (backend[engine] or {}).get("indices") or {}
                        prefixes.add(str(indices.get("index_prefix") or ""))
    return prefixes


def retention(idx: Index) -> list[Problem]:
    problems = []
    for pod in idx.pods:
        for c in pod.containers:
            if not _JAEGER_CLEANER.search(str(c.get("image", ""))):
                continue
            prefix = _flag(c, "index-prefix", "INDEX_PREFIX").rstrip("-")
            written = {p.rstrip("-") for p in _jaeger_prefixes(idx, pod.namespace)}
            if written and prefix not in written:
                problems.append(problem(pod.owner, f"container {c.get('name')} works on indices with prefix "
                                                    f"{prefix or '(none)'!r}, but Jaeger writes indices with prefix "
                                                    f"{sorted(written)}: it matches no data"))
    return problems


def check(objects: list[KubeObject]) -> list[Problem]:
    idx = Index(objects)
    problems, healthy = monitor_checks.check(idx)
    problems += network_policies(idx)
    problems += references(idx)
    problems += metrics(idx, healthy, load_exporters())
    problems += retention(idx)
    return problems
