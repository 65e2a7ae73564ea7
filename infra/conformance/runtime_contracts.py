"""Runtime contracts: start every container whose software installs here the way its rendered pod
declares it, then call its probes as the kubelet would and its scrape endpoints as Prometheus would.

Per pod (docs/CONFORMANCE.md, "Runtime contracts"): the volumes laid out as the kubelet does, init
containers run to completion in order, then the runnable containers started together in bubblewrap
sandboxes (read-only root, only the declared volumes writable, the declared user/group/fsGroup, no
capabilities) inside one network namespace where the pod has its own address and the managed services
it calls are local stand-ins (infra/conformance/standins.py). A problem names the object, the container
and the field. Containers of pods that are not run are listed with the reason.

Results are cached per distinct pod spec (`pods.spec_key`) for the life of the process, so the three
stacks start each distinct pod once.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.conformance import netclient
from infra.conformance.model import KubeObject, Problem
from infra.conformance.pods import NotStartable, PodLayout, sandbox_for, spec_key
from infra.conformance.pods import security as _security_of
from infra.conformance.podspec import (
    PodTemplate,
    References,
    ScrapeTarget,
    UnresolvedReference,
    memory_bytes,
    pod_templates,
    pod_volumes,
    scrape_targets,
)
from infra.conformance.sandbox import Namespace, Network, Process, Sandboxed, bwrap_argv
from infra.conformance.software import Verdict, classify
from infra.conformance.standins import Certificates, Postgres, Redis

CHECK = "runtime"
KUBELET_HEADERS = {"User-Agent": "kube-probe/1.34", "Accept": "*/*"}
PROMETHEUS_HEADERS = {"User-Agent": "Prometheus/3", "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}
READY_BUDGET_S = 90.0
DEFAULT_POD_CIDR = "10.0.0.0/16"
KEEP_ENV = "MLPLAT_RUNTIME_KEEP"  # set: keep the pods' logs and volumes after the check
SELDON_SERVER, SELDON_SERVER_CONTAINER = "Seldon operator: from Server", "mlserver"
AGENT_PROBE_MODEL = "runtime-contract-probe"
BATCH_KINDS = ("Job", "CronJob")
# Stand-in addresses inside the check's network namespace.
POSTGRES_IP, REDIS_IP, NOWHERE_IP = "10.250.0.2", "10.250.0.3", "10.250.0.9"
RDS = re.compile(r"[a-z0-9.-]+\.rds\.amazonaws\.com")
CACHE = re.compile(r"[a-z0-9.-]+\.cache\.amazonaws\.com")
ELSEWHERE = re.compile(r"[a-z0-9.-]+\.(?:kafka\.[a-z0-9-]+\.amazonaws\.com|svc\.cluster\.local)")
# Values of the program's Secrets (redacted in the plan), made up here and shared with the stand-ins.
DB_USER, DB_PASSWORD = "mlflow", "standin-db-password"
REDIS_TOKEN = "standin-redis-token"
ADMIN_USER, ADMIN_PASSWORD = "admin", "standin-admin-password"
LOCAL_SECRETS: dict[tuple[str, str], str] = {
    ("mlflow-db", "username"): DB_USER, ("mlflow-db", "password"): DB_PASSWORD,
    ("mlflow-admin", "username"): ADMIN_USER, ("mlflow-admin", "password"): ADMIN_PASSWORD,
    ("feast-redis", "token"): REDIS_TOKEN, ("redis-exporter", "password"): REDIS_TOKEN,
    ("kfp-db-proxy", "userlist.txt"): f'"{DB_USER}" "{DB_PASSWORD}"\n',
}
# Pods whose work needs a service with no stand-in here: listed, not run.
NEEDS_ELSEWHERE = {
    "feast-stream-ingestor": "consumes MSK Kafka with IAM authentication (no Kafka broker installs here)",
    "feast-feature-server": "reads its registry from S3 at start-up (no S3 stand-in in this check)",
}


def local_secret(namespace: str, name: str, key: str) -> str:
    if not key:
        return ",".join(k for (n, k) in LOCAL_SECRETS if n == name)
    return LOCAL_SECRETS.get((name, key), f"standin-{name}-{key}")


@dataclass
class Row:
    workload: str
    container: str
    image: str
    status: str  # "ran", "not run"
    detail: str


@dataclass
class RuntimeReport:
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: int = 0
    reused: int = 0

    def table(self) -> str:
        head = ("workload", "container", "image", "run", "detail")
        rows = [head] + [(r.workload, r.container, r.image, r.status, r.detail) for r in self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]).rstrip()
                         for r in rows)


@dataclass
class _Outcome:
    problems: list[tuple[str, str]]  # (container, message)
    details: dict[str, str]  # container -> what was seen
    notes: list[str]


_CACHE: dict[str, _Outcome] = {}


class Harness:
    """The network namespace, the stand-in services and a scratch directory, made on first use."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mlplat-runtime-"))
        self.pod_cidr = DEFAULT_POD_CIDR
        self.directory.chmod(0o755)
        self.network: Network | None = None
        self.services: list[Postgres | Redis] = []
        self.trust: Path | None = None
        self._next_ip = 2

    def up(self) -> Network:
        if self.network is None:
            self.network = Network()
            for ip in (POSTGRES_IP, REDIS_IP):
                self.network.add_address(ip)
            certs = Certificates(self.directory / "certs", [POSTGRES_IP, REDIS_IP, "*.rds.amazonaws.com",
                                                            "*.cache.amazonaws.com", "*.amazonaws.com"])
            self.trust = certs.trust_bundle()
            postgres = Postgres(self.network, self.directory / "postgres", certs, POSTGRES_IP, 5432,
                                {DB_USER: DB_PASSWORD}, ["mlflow"])
            redis = Redis(self.network, self.directory / "redis", certs, REDIS_IP, 6379, REDIS_TOKEN)
            for service in (postgres, redis):
                self.services.append(service)
                service.start()
        return self.network

    def pod_network(self) -> tuple[str, Namespace]:
        """A new pod address and its network namespace."""
        # Pod addresses from the last /24 of the stack's VPC (the VPC CNI gives pods VPC addresses).
        network = ipaddress.ip_network(self.pod_cidr, strict=False)
        ip = str(network.broadcast_address - 255 + self._next_ip)
        self._next_ip += 1
        assert self.network is not None
        return ip, self.network.pod(ip)

    def close(self) -> None:
        for service in self.services:
            service.stop()
        if self.network is not None:
            self.network.close()
        if os.environ.get(KEEP_ENV):
            print(f"runtime check: logs and volumes kept in {self.directory}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(self.directory)], check=False)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _hosts(pod: PodTemplate, refs: References, pod_ip: str) -> tuple[str, dict[str, str]]:
    """The pod's /etc/hosts (the kubelet writes one; cluster DNS names are added here) and the aliases of
    stand-in hosts for the cache key."""
    texts = _strings(pod.spec)
    for kind in ("ConfigMap", "Secret"):
        for vol in pod.spec.get("volumes") or []:
            ref = vol.get("configMap") if kind == "ConfigMap" else vol.get("secret")
            if ref:
                texts += list((refs.keys(kind, pod.namespace, str(ref.get("name") or ref.get("secretName"))) or {})
                              .values())
        for c in (pod.spec.get("containers") or []) + (pod.spec.get("initContainers") or []):
            for src in c.get("envFrom") or []:
                ref = src.get("configMapRef") if kind == "ConfigMap" else src.get("secretRef")
                if ref:
                    texts += list((refs.keys(kind, pod.namespace, str(ref.get("name"))) or {}).values())
    aliases: dict[str, str] = {}
    lines = ["127.0.0.1 localhost", f"{pod_ip} {pod.workload.name}-0"]
    for text in texts:
        for pattern, ip, role in ((RDS, POSTGRES_IP, "<rds>"), (CACHE, REDIS_IP, "<redis>"),
                                  (ELSEWHERE, NOWHERE_IP, None)):
            for host in pattern.findall(text):
                if host not in aliases and host not in {line.split()[1] for line in lines}:
                    lines.append(f"{ip} {host}")
                    if role:
                        aliases[host] = role
    return "\n".join(lines) + "\n", aliases


def _call(network: Network, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = subprocess.run([*network.prefix, sys.executable, "-I", netclient.__file__], input=json.dumps(requests),
                         capture_output=True, text=True, timeout=60)
    return list(json.loads(out.stdout)) if out.returncode == 0 else [{"status": 0, "error": out.stderr}] * len(requests)


def _port(container: dict[str, Any], port: Any) -> int | None:
    for p in container.get("ports") or []:
        if port == p.get("name") or str(port) == str(p.get("containerPort")):
            return int(p["containerPort"])
    return int(port) if str(port).isdigit() else None


def _probe_request(kind: str, probe: dict[str, Any], container: dict[str, Any], pod_ip: str) -> dict[str, Any]:
    if "httpGet" in probe:
        get = probe["httpGet"]
        port = _port(container, get.get("port"))
        host = get.get("host") or pod_ip
        headers = {**KUBELET_HEADERS, **{h["name"]: h["value"] for h in get.get("httpHeaders") or []}}
        scheme = str(get.get("scheme", "HTTP")).lower()
        return {"kind": "http", "url": f"{scheme}://{host}:{port}{get.get('path', '/')}",
                "headers": headers, "timeout": probe.get("timeoutSeconds", 1), "field": f"{kind}.httpGet",
                "what": f"GET {get.get('path', '/')} on port {get.get('port')}"}
    if "tcpSocket" in probe:
        port = _port(container, probe["tcpSocket"].get("port"))
        return {"kind": "tcp", "host": pod_ip, "port": port, "timeout": probe.get("timeoutSeconds", 1),
                "field": f"{kind}.tcpSocket", "what": f"TCP port {probe['tcpSocket'].get('port')}"}
    if "exec" in probe:
        return {"kind": "exec", "command": list(probe["exec"].get("command") or []), "field": f"{kind}.exec",
                "what": "exec " + " ".join(probe["exec"].get("command") or [])}
    return {"kind": "unsupported", "field": kind, "what": f"{kind} ({', '.join(probe)}) not called here"}


def _budget(container: dict[str, Any]) -> float:
    """How long the container may take to get ready: with a startup probe, until the kubelet would kill it
    (initialDelaySeconds + failureThreshold x periodSeconds); otherwise READY_BUDGET_S. Never above that."""
    probe = container.get("startupProbe")
    if not probe:
        return READY_BUDGET_S
    allowed = probe.get("initialDelaySeconds", 0) + probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    return float(min(READY_BUDGET_S, max(10, allowed)))


def _ok(kind: str, result: dict[str, Any]) -> bool:
    status = int(result.get("status", 0))
    return 200 <= status < 400 if kind == "http" else status == 1


def _describe(result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])
    body = " ".join(str(result.get("body", "")).split())[:160]
    return f"HTTP {result.get('status')}" + (f": {body}" if body else "")


def _start_box(box: Sandboxed, log: Path, network: Namespace) -> Process:
    for mount in box.mounts:
        if not mount.source.exists():
            mount.source.mkdir(parents=True)  # a subPath that is not there yet: the kubelet makes a directory
    return Process(bwrap_argv(box), log, network)


def _exec_probe(network: Namespace, box: Sandboxed, command: list[str], log: Path) -> tuple[bool, str]:
    probe_box = Sandboxed(command, box.env, box.mounts, box.uid, box.gid, box.groups, box.cwd, box.hostname)
    process = Process(bwrap_argv(probe_box), log, network)
    code = process.wait(30)
    process.stop()
    return code == 0, f"exit {code}: {process.tail(5)}"


def _scrape_request(target: ScrapeTarget, pod_ip: str) -> dict[str, Any]:
    headers = dict(PROMETHEUS_HEADERS)
    if target.basic_auth is not None:
        import base64  # only scrapes with basic auth need it

        token = base64.b64encode(f"{target.basic_auth[0]}:{target.basic_auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif target.bearer:
        headers["Authorization"] = f"Bearer {target.bearer}"
    return {"kind": "http", "url": f"{target.scheme}://{pod_ip}:{target.port}{target.path}", "headers": headers,
            "timeout": 10}


def _is_exposition(body: str) -> bool:
    return bool(re.search(r"^(# (TYPE|HELP) \w+|[a-zA-Z_:][\w:]*(\{[^}]*\})? [-+0-9.eEinfNa]+)", body, re.M))


def _explain_exit(tail: str, read_only: bool) -> str:
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
    return "the container exited"


class _PodRun:
    def __init__(self, harness: Harness, pod: PodTemplate, objects: list[KubeObject], refs: References) -> None:
        self.h, self.pod, self.objects, self.refs = harness, pod, objects, refs
        self.processes: list[tuple[str, Process]] = []
        self.problems: list[tuple[str, str]] = []
        self.details: dict[str, str] = {}
        self.notes: list[str] = []

    def run(self, runnable: dict[str, tuple[dict[str, Any], Verdict]], init: list[tuple[dict[str, Any], Verdict]],
            report: RuntimeReport) -> None:
        network = self.h.up()
        assert self.h.trust is not None
        pod_ip, self.netns = self.h.pod_network()
        directory = self.h.directory / "pods" / f"{self.pod.namespace}-{self.pod.workload.name}-{pod_ip}"
        hosts_text, aliases = _hosts(self.pod, self.refs, pod_ip)
        directory.mkdir(parents=True)
        hosts = directory / "hosts"
        hosts.write_text(hosts_text)
        hosts.chmod(0o644)
        try:
            volumes = pod_volumes(self.pod, self.refs, token="standin-service-account-token")
        except UnresolvedReference as exc:
            report.problems.append(Problem(CHECK, self.pod.ref, str(exc)))
            return
        layout = PodLayout(self.pod, directory, volumes)
        boxes: dict[str, Sandboxed] = {}
        order = [(c, v) for c, v in init] + list(runnable.values())
        for container, verdict in order:
            assert verdict.image is not None
            try:
                boxes[container["name"]] = sandbox_for(self.pod, container, verdict.image, self.refs, layout, pod_ip,
                                                       hosts, self.h.trust, self.h.directory)
            except (NotStartable, UnresolvedReference) as exc:
                self.problems.append((container["name"], str(exc)))
        targets = [t for t in scrape_targets(self.pod, self.objects, self.refs) if t.container in runnable]
        probes = {name: [(k, c.get(k)) for k in ("startupProbe", "readinessProbe", "livenessProbe") if c.get(k)]
                  for name, (c, _) in runnable.items()}
        key = spec_key(self.pod, list(boxes.values()), [probes, [t.__dict__ for t in targets]], layout, pod_ip, aliases,
                       self.h.pod_cidr)
        if key in _CACHE and not self.problems:
            self._report(_CACHE[key], runnable, report, reused=True)
            return
        if not self.problems:
            layout.create(token="standin-service-account-token", ca=(self.h.directory / "certs" / "ca.crt").read_text())
            try:
                self._start(network, boxes, runnable, init, layout, pod_ip, targets, directory)
            finally:
                for _, process in self.processes:
                    process.stop()
            self._sizes(layout)
        outcome = _Outcome(self.problems, self.details, self.notes)
        _CACHE[key] = outcome
        self._report(outcome, runnable, report, reused=False)

    def _report(self, outcome: _Outcome, runnable: dict[str, tuple[dict[str, Any], Verdict]],
                report: RuntimeReport, reused: bool) -> None:
        report.reused += reused
        report.started += not reused
        for container, message in outcome.problems:
            report.problems.append(Problem(CHECK, f"{self.pod.ref} container {container}", message))
        report.notes.extend(f"{self.pod.ref}: {n}" for n in outcome.notes)
        self.details = outcome.details

    def _start(self, network: Network, boxes: dict[str, Sandboxed], runnable: dict[str, tuple[dict[str, Any], Verdict]],
               init: list[tuple[dict[str, Any], Verdict]], layout: PodLayout, pod_ip: str, targets: list[ScrapeTarget],
               directory: Path) -> None:
        for container, _ in init:
            name = container["name"]
            process = _start_box(boxes[name], directory / f"{name}.log", self.netns)
            code = process.wait(120)
            process.stop()
            if code != 0:
                self.problems.append((name, f"init container exited {code} ({_explain_exit(process.tail(400), True)}): "
                                            f"{process.tail(6)}"))
                return
            self.details[name] = "init: exit 0"
        for name in runnable:
            self.processes.append((name, _start_box(boxes[name], directory / f"{name}.log", self.netns)))
        pending = {name: self._gate(container, pod_ip) for name, (container, _) in runnable.items()}
        budget = max(_budget(container) for container, _ in runnable.values())
        deadline = time.monotonic() + budget
        passed: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            for name, process in self.processes:
                if name in pending and not process.alive():
                    read_only = bool(_security_of(self.pod, runnable[name][0]).get("readOnlyRootFilesystem"))
                    self.problems.append((name, f"exited {process.popen.returncode} before it was ready "
                                                f"({_explain_exit(process.tail(400), read_only)}): "
                                                f"{process.tail(6)}"))
                    pending.pop(name)
            for name, request in list(pending.items()):
                ok, _ = self._probe(network, boxes[name], request, directory)
                if ok:
                    passed[name] = request["field"]
                    pending.pop(name)
            time.sleep(0.5)
        for name, request in pending.items():
            _, seen = self._probe(network, boxes[name], request, directory)
            process = dict(self.processes)[name]
            why = _explain_exit(process.tail(400), bool(_security_of(self.pod, runnable[name][0]).get(
                "readOnlyRootFilesystem")))
            why = "" if why == "the container exited" else f" ({why})"
            self.problems.append((name, f"{request['field']} ({request['what']}) never succeeded within "
                                        f"{budget:.0f}s{why}: {seen}; log: {process.tail(6)}"))
        for name, (container, _) in runnable.items():
            if name not in passed:
                continue
            seen = [f"{passed[name]} ok"]
            for kind in ("readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if not probe:
                    continue
                request = _probe_request(kind, probe, container, pod_ip)
                ok, result = self._probe(network, boxes[name], request, directory)
                if not ok:
                    self.problems.append((name, f"{request['field']} ({request['what']}) fails: {result}"))
                else:
                    seen.append(f"{request['field']} ok")
            self.details[name] = ", ".join(dict.fromkeys(seen))
        self._scrape(network, targets, pod_ip, passed)
        for name, (container, _) in runnable.items():
            seldon_server = self.pod.workload.origin.startswith(SELDON_SERVER)
            if name in passed and name == SELDON_SERVER_CONTAINER and seldon_server:
                self._seldon_repository(network, container, boxes[name], pod_ip)
        for name, process in self.processes:
            if name in passed and not process.alive():
                self.problems.append((name, f"exited {process.popen.returncode} after it was ready: {process.tail(6)}"))

    def _seldon_repository(self, network: Network, container: dict[str, Any], box: Sandboxed, pod_ip: str) -> None:
        """Seldon's agent copies each model into `MLSERVER_MODELS_DIR` (its volume, shared with the server) and
        asks MLServer to load it by name from its repository (SeldonIO/seldon-core v2.10.2
        scheduler/pkg/agent/repository/mlserver/mlserver.go, scheduler/pkg/agent/client.go). The server must
        therefore list a model placed there: one model-settings.json is written as the agent would and the
        repository index (Open Inference Protocol `POST /v2/repository/index`) is asked for it."""
        models_dir = box.env.get("MLSERVER_MODELS_DIR", "")
        mount = next((m for m in sorted(box.mounts, key=lambda m: -len(m.target))
                      if models_dir == m.target or models_dir.startswith(m.target.rstrip("/") + "/")), None)
        if mount is None or not mount.source.is_dir():
            self.problems.append((container["name"], f"env MLSERVER_MODELS_DIR {models_dir or '(unset)'}: no volume "
                                                     "holds it, so the agent's models cannot reach the server"))
            return
        folder = mount.source / os.path.relpath(models_dir, mount.target) / AGENT_PROBE_MODEL
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model-settings.json").write_text(json.dumps({"name": AGENT_PROBE_MODEL,
                                                                "implementation": "mlserver.models.MLModel"}))
        port = _port(container, "server-http")
        result = _call(network, [{"kind": "http", "url": f"http://{pod_ip}:{port}/v2/repository/index",
                                  "headers": {"Content-Type": "application/json"}, "data": "{}", "timeout": 10}])[0]
        listed = result.get("status") == 200 and AGENT_PROBE_MODEL in str(result.get("body"))
        if not listed:
            argv = " ".join(box.argv)
            self.problems.append((container["name"], f"command/args ({argv}): a model the agent places in "
                                                     f"MLSERVER_MODELS_DIR={models_dir} is not in the server's "
                                                     f"repository index ({_describe(result)})"))
        else:
            self.details[container["name"]] += f"; agent repository contract ok ({models_dir})"

    def _gate(self, container: dict[str, Any], pod_ip: str) -> dict[str, Any]:
        """The probe that decides readiness: startup, else readiness, else liveness, else the process is up."""
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container.get(kind):
                return _probe_request(kind, container[kind], container, pod_ip)
        return {"kind": "alive", "field": "process", "what": "the process stays up"}

    def _probe(self, network: Network, box: Sandboxed, request: dict[str, Any], directory: Path) -> tuple[bool, str]:
        if request["kind"] == "exec":
            return _exec_probe(self.netns, box, request["command"], directory / "exec-probe.log")
        if request["kind"] == "alive":
            time.sleep(3)
            return True, "up"
        if request["kind"] == "unsupported":
            self.notes.append(request["what"])
            return True, request["what"]
        result = _call(network, [request])[0]
        return _ok(request["kind"], result), _describe(result)

    def _scrape(self, network: Network, targets: list[ScrapeTarget], pod_ip: str, ready: dict[str, str]) -> None:
        live = [t for t in targets if t.container in ready]
        results = _call(network, [_scrape_request(t, pod_ip) for t in live]) if live else []
        for target, result in zip(live, results, strict=True):
            auth = " with basic auth" if target.basic_auth else " with a bearer token" if target.bearer else ""
            what = f"scrape by {target.monitor} ({target.scheme}://<pod-ip>:{target.port}{target.path}{auth})"
            if result.get("status") != 200 or not _is_exposition(str(result.get("body", ""))):
                self.problems.append((target.container, f"{what} fails: {_describe(result)}"))
            else:
                self.details[target.container] = self.details.get(target.container, "") + f"; {what} ok"

    def _sizes(self, layout: PodLayout) -> None:
        for name, vol in layout.volumes.items():
            if vol.kind == "emptyDir" and vol.size_limit and layout.usage(name) > memory_bytes(vol.size_limit):
                self.problems.append(("(pod)", f"volumes {name}: {layout.usage(name)} bytes written, over its "
                                               f"emptyDir.sizeLimit {vol.size_limit} (the kubelet evicts the pod)"))


def check(objects: list[KubeObject], harness: Harness, pod_cidr: str = "") -> RuntimeReport:
    """Run every runnable pod of these objects (rendered, declared and operator-made); pods get addresses
    of `pod_cidr` (the stack's VPC)."""
    report = RuntimeReport()
    harness.pod_cidr = pod_cidr or DEFAULT_POD_CIDR
    refs = References(objects, local_secret)
    for pod in pod_templates(objects):
        containers = list(pod.spec.get("containers") or [])
        init = list(pod.spec.get("initContainers") or [])
        verdicts = {c["name"]: classify(c.get("image")) for c in init + containers}
        reason = _pod_reason(pod)
        runnable = {c["name"]: (c, verdicts[c["name"]]) for c in containers
                    if verdicts[c["name"]].image is not None and not reason}
        init_runnable = [(c, verdicts[c["name"]]) for c in init if verdicts[c["name"]].image is not None]
        run = _PodRun(harness, pod, objects, refs)
        if runnable:
            for c in init:
                if verdicts[c["name"]].image is None:
                    report.notes.append(f"{pod.ref}: init container {c['name']} skipped "
                                        f"({verdicts[c['name']].reason})")
            run.run(runnable, init_runnable, report)
        for c in init + containers:
            verdict = verdicts[c["name"]]
            if c["name"] in runnable or (runnable and any(c is i for i, _ in init_runnable)):
                image = verdict.image
                assert image is not None
                version = image.version if image.version == verdict.pinned else \
                    f"{image.version} here, image pins {verdict.pinned or '?'}"
                report.rows.append(Row(pod.ref, c["name"], str(c.get("image")), "ran",
                                       f"{image.software} {version}; {run.details.get(c['name'], 'see problems')}"))
                if image.version != verdict.pinned:
                    report.notes.append(f"{pod.ref} container {c['name']}: {image.software} is {image.version} here, "
                                        f"the image {c.get('image')} carries {verdict.pinned}")
            else:
                why = reason or verdict.reason or "a sidecar of a pod that is not run"
                if verdict.image is not None and runnable and not reason:
                    why = "not started: no container of its pod is runnable"
                report.rows.append(Row(pod.ref, c["name"], str(c.get("image")), "not run", why))
    report.notes.extend(f"Secret {s}: value made up here (the plan redacts the program's Secrets)"
                        for s in sorted(refs.substituted))
    return report


def _pod_reason(pod: PodTemplate) -> str:
    if pod.workload.kind in BATCH_KINDS:
        return "batch Job: its work needs S3 or the Kubernetes/KFP APIs (no stand-in here)"
    if pod.workload.origin.startswith("external"):
        return "made by EKS, not by the plan"
    if pod.workload.origin.startswith("prometheus-operator"):
        return ("the operator makes this pod (image and flags from prometheus-operator); Debian's prometheus is "
                "2.42, the pinned one 3.x: not run")
    return NEEDS_ELSEWHERE.get(pod.workload.name, "")
