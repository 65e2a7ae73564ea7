"""Probes as the kubelet calls them and scrapes as Prometheus does, from the cluster side of the runtime
check's network (infra/conformance/netclient.py runs there), and what a failed start-up log says."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.conformance import netclient
from infra.conformance.podspec import ScrapeTarget
from infra.conformance.sandbox import Namespace, Process, Sandboxed, bwrap_argv

KUBELET_HEADERS = {"User-Agent": "kube-probe/1.34", "Accept": "*/*"}
PROMETHEUS_HEADERS = {"User-Agent": "Prometheus/3", "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}
READY_BUDGET_S = 90.0
MAX_BUDGET_S = 180.0


def call(network: Namespace, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = subprocess.run([*network.prefix, sys.executable, "-I", netclient.__file__], input=json.dumps(requests),
                         capture_output=True, text=True, timeout=60)
    return list(json.loads(out.stdout)) if out.returncode == 0 else [{"status": 0, "error": out.stderr}] * len(requests)


def container_port(container: dict[str, Any], port: Any) -> int | None:
    for p in container.get("ports") or []:
        if port == p.get("name") or str(port) == str(p.get("containerPort")):
            return int(p["containerPort"])
    return int(port) if str(port).isdigit() else None


def probe_request(kind: str, probe: dict[str, Any], container: dict[str, Any], pod_ip: str) -> dict[str, Any]:
    if "httpGet" in probe:
        get = probe["httpGet"]
        port = container_port(container, get.get("port"))
        host = get.get("host") or pod_ip
        headers = {**KUBELET_HEADERS, **{h["name"]: h["value"] for h in get.get("httpHeaders") or []}}
        scheme = str(get.get("scheme", "HTTP")).lower()
        return {"kind": "http", "url": f"{scheme}://{host}:{port}{get.get('path', '/')}",
                "headers": headers, "timeout": probe.get("timeoutSeconds", 1), "field": f"{kind}.httpGet",
                "what": f"GET {get.get('path', '/')} on port {get.get('port')}"}
    if "tcpSocket" in probe:
        port = container_port(container, probe["tcpSocket"].get("port"))
        return {"kind": "tcp", "host": pod_ip, "port": port, "timeout": probe.get("timeoutSeconds", 1),
                "field": f"{kind}.tcpSocket", "what": f"TCP port {probe['tcpSocket'].get('port')}"}
    if "exec" in probe:
        return {"kind": "exec", "command": list(probe["exec"].get("command") or []), "field": f"{kind}.exec",
                "what": "exec " + " ".join(probe["exec"].get("command") or [])}
    return {"kind": "unsupported", "field": kind, "what": f"{kind} ({', '.join(probe)}) not called here"}


def budget(container: dict[str, Any]) -> float:
    """How long the container may take to get ready: until the kubelet would restart it, i.e. the startup
    probe's initialDelaySeconds + failureThreshold x periodSeconds, else the liveness probe's; without either,
    READY_BUDGET_S. At most MAX_BUDGET_S."""
    probe = container.get("startupProbe") or container.get("livenessProbe")
    if not probe:
        return READY_BUDGET_S
    allowed = probe.get("initialDelaySeconds", 0) + probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    return float(min(MAX_BUDGET_S, max(10, allowed)))


def succeeded(kind: str, result: dict[str, Any]) -> bool:
    status = int(result.get("status", 0))
    return 200 <= status < 400 if kind == "http" else status == 1


def describe(result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])
    body = " ".join(str(result.get("body", "")).split())[:160]
    return f"HTTP {result.get('status')}" + (f": {body}" if body else "")


def start_box(box: Sandboxed, log: Path, network: Namespace) -> Process:
    for mount in box.mounts:
        if not mount.source.exists():
            mount.source.mkdir(parents=True)  # a subPath that is not there yet: the kubelet makes a directory
    return Process(bwrap_argv(box), log, network)


def exec_probe(network: Namespace, box: Sandboxed, command: list[str], log: Path) -> tuple[bool, str]:
    probe_box = Sandboxed(command, box.env, box.mounts, box.uid, box.gid, box.groups, box.cwd, box.hostname)
    process = Process(bwrap_argv(probe_box), log, network)
    code = process.wait(30)
    process.stop()
    return code == 0, f"exit {code}: {process.tail(5)}"


def scrape_request(target: ScrapeTarget, pod_ip: str) -> dict[str, Any]:
    headers = dict(PROMETHEUS_HEADERS)
    if target.basic_auth is not None:
        token = base64.b64encode(f"{target.basic_auth[0]}:{target.basic_auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif target.bearer:
        headers["Authorization"] = f"Bearer {target.bearer}"
    return {"kind": "http", "url": f"{target.scheme}://{pod_ip}:{target.port}{target.path}", "headers": headers,
            "timeout": 10}


def is_exposition(body: str) -> bool:
    return bool(re.search(r"^(# (TYPE|HELP) \w+|[a-zA-Z_:][\w:]*(\{[^}]*\})? [-+0-9.eEinfNa]+)", body, re.M))


def explain_exit(tail: str, read_only: bool) -> str:
    """Name the field behind a start-up failure that the log shows."""
    ro = re.search(r"Read-only file system: '([^']+)'|'([^']+)': Read-only file system|(/[\w./-]+): Read-only", tail)
    if ro:
        path = next(g for g in ro.groups() if g)
        if read_only:
            return (f"securityContext.readOnlyRootFilesystem: it writes {path}, which no writable volumeMount "
                    "covers")
        return (f"volumeMounts: it writes {path} on the image's root filesystem, which no volume covers (read-only "
                "here; in the image only its owner may write there)")
    denied = re.search(r"Permission denied: '([^']+)'", tail)
    if denied:
        return f"securityContext (user/group/fsGroup): it may not write {denied.group(1)}"
    if re.search(r"kube-config|kubeconfig|Service token file does not exist|Service host/port is not set", tail):
        return ("automountServiceAccountToken / serviceAccountName: it loads the Kubernetes client configuration at "
                "start and finds no service account token")
    return "the container exited"
