"""Monitors: every ServiceMonitor selects a Service that names the endpoint's port and selects pods;
every PodMonitor selects a pod template with a container port of the endpoint's name; every monitor
is picked up by a Prometheus of the plan (its monitor and namespace selectors)."""

from __future__ import annotations

import json
from typing import Any

from infra.conformance.model import KubeObject, Problem
from infra.conformance.selectors import Index, matches, namespace_scope, problem


def _service_ports(service: KubeObject) -> list[dict[str, Any]]:
    return list((service.manifest.get("spec") or {}).get("ports") or [])


def _service_monitor(mon: KubeObject, idx: Index) -> tuple[list[Problem], bool]:
    spec = mon.manifest.get("spec") or {}
    scope = namespace_scope(spec.get("namespaceSelector"), mon.namespace, idx.namespaces)
    services = [s for s in idx.of_kind("Service") if s.namespace in scope and matches(spec.get("selector"), s.labels)]
    if not services:
        return [problem(mon, f"selects no Service (selector {json.dumps(spec.get('selector') or {})} in "
                              f"{sorted(scope)})")], False
    problems = []
    for i, endpoint in enumerate(spec.get("endpoints") or []):
        port, target = endpoint.get("port"), endpoint.get("targetPort")
        if port is not None and not any(p.get("name") == port for s in services for p in _service_ports(s)):
            names = sorted({str(p.get("name")) for s in services for p in _service_ports(s)})
            problems.append(problem(mon, f"spec.endpoints.{i}.port: {port!r} is not a port of the selected "
                                          f"Services {[s.name for s in services]} (ports {names})"))
        if target is not None and not any(p.get("targetPort") == target for s in services
                                          for p in _service_ports(s)):
            problems.append(problem(mon, f"spec.endpoints.{i}.targetPort: {target!r} is not a targetPort of the "
                                          f"selected Services"))
    for service in services:
        if service.derived:
            continue
        sel = (service.manifest.get("spec") or {}).get("selector")
        if sel is None:
            continue  # endpoints managed by hand or by a controller
        pods = idx.pods_in(service.namespace, {"matchLabels": sel})
        if not pods:
            problems.append(problem(mon, f"its Service {service.namespace}/{service.name} selects no pods "
                                          f"(selector {json.dumps(sel)})"))
            continue
        for p in _service_ports(service):
            target = p.get("targetPort")
            if isinstance(target, str) and not any(target in pod.port_names() for pod in pods):
                problems.append(problem(mon, f"its Service {service.namespace}/{service.name} port "
                                              f"{p.get('name')!r} targets {target!r}, a port no selected pod names"))
    return problems, not problems


def _pod_monitor(mon: KubeObject, idx: Index) -> tuple[list[Problem], bool]:
    spec = mon.manifest.get("spec") or {}
    scope = namespace_scope(spec.get("namespaceSelector"), mon.namespace, idx.namespaces)
    pods = [p for ns in scope for p in idx.pods_in(ns, spec.get("selector"))]
    if not pods:
        return [problem(mon, f"selects no pods (selector {json.dumps(spec.get('selector') or {})} in "
                              f"{sorted(scope)})")], False
    problems = []
    for i, endpoint in enumerate(spec.get("podMetricsEndpoints") or []):
        port, number = endpoint.get("port"), endpoint.get("portNumber")
        if port is not None and not any(port in p.port_names() for p in pods):
            owners = sorted({p.owner.name for p in pods})
            names = sorted(set().union(*(p.port_names() for p in pods)))
            problems.append(problem(mon, f"spec.podMetricsEndpoints.{i}.port: {port!r} is not a container port of "
                                          f"the selected pods ({', '.join(owners)}; ports {names})"))
        if number is not None and not any(int(number) in p.port_numbers() for p in pods):
            problems.append(problem(mon, f"spec.podMetricsEndpoints.{i}.portNumber: {number} is not a container "
                                          "port of the selected pods"))
    return problems, not problems


def _selected_by_prometheus(mon: KubeObject, idx: Index) -> bool | None:
    field = "serviceMonitor" if mon.kind == "ServiceMonitor" else "podMonitor"
    proms = [p for p in idx.of_kind("Prometheus") if p.api_version.startswith("monitoring.coreos.com/")]
    if not proms:
        return None
    for prom in proms:
        spec = prom.manifest.get("spec") or {}
        selector = spec.get(f"{field}Selector")
        ns_selector = spec.get(f"{field}NamespaceSelector")
        if selector is None:
            continue  # nil selector: no monitors of this kind
        in_scope = mon.namespace == prom.namespace if ns_selector is None else matches(
            ns_selector, idx.namespaces.get(mon.namespace, {}))
        if in_scope and matches(selector, mon.labels):
            return True
    return False


def check(idx: Index) -> tuple[list[Problem], dict[str, bool]]:
    problems: list[Problem] = []
    healthy: dict[str, bool] = {}
    for mon in [*idx.of_kind("ServiceMonitor"), *idx.of_kind("PodMonitor")]:
        if not mon.api_version.startswith("monitoring.coreos.com/"):
            continue
        found, ok = (_service_monitor if mon.kind == "ServiceMonitor" else _pod_monitor)(mon, idx)
        selected = _selected_by_prometheus(mon, idx)
        if selected is False:
            found.append(problem(mon, "no Prometheus of the plan selects it (monitor/namespace selectors)"))
        problems.extend(found)
        healthy[f"{mon.kind} {mon.namespace}/{mon.name}"] = ok and selected is not False
    return problems, healthy
