"""Runtime contracts: start every container whose software installs here the way its rendered pod
declares it, then call its probes as the kubelet would and its scrape endpoints as Prometheus would.

Per pod (docs/CONFORMANCE.md, "Runtime contracts"): the volumes laid out as the kubelet does, init
containers run to completion in order, then the runnable containers started together in bubblewrap
sandboxes (read-only root, only the declared volumes writable, the declared user/group/fsGroup, no
capabilities) in a network namespace of the pod's own, with its own address; the managed services it
calls are local stand-ins (infra/conformance/harness.py, standins.py); probes and scrapes come from the
cluster side (infra/conformance/probes.py). A problem names the object, the container and the field.
Containers of pods that are not run are listed with the reason.

Results are cached per distinct pod spec (`pods.spec_key`) for the life of the process, so the three
stacks start each distinct pod once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.conformance.harness import (
    DEFAULT_POD_CIDR,
    IRSA_ANNOTATION,
    RDS,
    S3_IP,
    S3_PORT,
    S3_URL,
    Harness,
    decoded,
    hosts_file,
    local_secret,
    strings,
)
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
from infra.conformance.probes import (
    budget,
    call,
    container_port,
    describe,
    exec_probe,
    explain_exit,
    is_exposition,
    probe_request,
    scrape_request,
    start_box,
    succeeded,
)
from infra.conformance.sandbox import Network, Process, Sandboxed
from infra.conformance.software import Verdict, classify

CHECK = "runtime"
SELDON_SERVER, SELDON_SERVER_CONTAINER = "Seldon operator: from Server", "mlserver"
AGENT_PROBE_MODEL = "runtime-contract-probe"
BATCH_KINDS = ("Job", "CronJob")
# Pods whose work needs a service with no stand-in here: listed, not run.
NEEDS_ELSEWHERE = {
    "feast-stream-ingestor": "consumes MSK Kafka with IAM authentication (no Kafka broker installs here)",
}




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
        hosts_text, aliases = hosts_file(self.pod, self.refs, pod_ip)
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
        injected = self._irsa(network)
        boxes: dict[str, Sandboxed] = {}
        order = [(c, v) for c, v in init] + list(runnable.values())
        for container, verdict in order:
            assert verdict.image is not None
            try:
                boxes[container["name"]] = sandbox_for(self.pod, container, verdict.image, self.refs, layout, pod_ip,
                                                       hosts, self.h.trust, self.h.directory, injected,
                                                       image_files=self.h.image_files)
            except (NotStartable, UnresolvedReference) as exc:
                self.problems.append((container["name"], str(exc)))
        targets = [t for t in scrape_targets(self.pod, self.objects, self.refs) if t.container in runnable]
        probes = {name: [(k, c.get(k)) for k in ("startupProbe", "readinessProbe", "livenessProbe") if c.get(k)]
                  for name, (c, _) in runnable.items()}
        # The files bound into our images count by content (a test swaps the CA bundle for another CA's).
        image_files = {dest: hashlib.sha256(src.read_bytes()).hexdigest() for dest, src in self.h.image_files.items()}
        key = spec_key(self.pod, list(boxes.values()), [probes, [t.__dict__ for t in targets], image_files], layout,
                       pod_ip, aliases, self.h.pod_cidr, self.refs.secret_values)
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

    def _irsa(self, network: Network) -> dict[str, str]:
        """For a service account with an IAM role (IRSA), the pod identity webhook injects a web identity; here the
        pod gets the S3 stand-in's endpoint and static keys instead, and the buckets its configuration names."""
        account = str(self.pod.spec.get("serviceAccountName") or "default")
        sa = next((o for o in self.objects if o.kind == "ServiceAccount" and o.namespace == self.pod.namespace
                   and o.name == account), None)
        if sa is None or IRSA_ANNOTATION not in ((sa.manifest.get("metadata") or {}).get("annotations") or {}):
            return {}
        assert self.h.s3 is not None
        texts = strings(self.pod.spec)
        texts += [decoded(t) for t in texts]
        region = next((e.get("value") for c in self.pod.spec.get("containers") or [] for e in c.get("env") or []
                       if e.get("name") == "AWS_REGION" and e.get("value")), "us-east-1")
        for bucket in sorted({b for t in texts for b in S3_URL.findall(t)}):
            self.h.s3.bucket(bucket, str(region))
        self.notes.append(f"service account {account} has an IAM role: AWS_ENDPOINT_URL and static keys of the S3 "
                          "stand-in instead of the web identity the pod identity webhook injects")
        return {"AWS_ENDPOINT_URL": f"http://{S3_IP}:{S3_PORT}", "AWS_ACCESS_KEY_ID": "standin",
                "AWS_SECRET_ACCESS_KEY": "standin"}

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
            process = start_box(boxes[name], directory / f"{name}.log", self.netns)
            code = process.wait(120)
            process.stop()
            if code != 0:
                self.problems.append((name, f"init container exited {code} ({explain_exit(process.tail(400), True)}): "
                                            f"{process.tail(6)}"))
                return
            self.details[name] = "init: exit 0"
        for name in runnable:
            self.processes.append((name, start_box(boxes[name], directory / f"{name}.log", self.netns)))
        pending = {name: self._gate(container, pod_ip) for name, (container, _) in runnable.items()}
        wait_s = max(budget(container) for container, _ in runnable.values())
        deadline = time.monotonic() + wait_s
        passed: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            for name, process in self.processes:
                if name in pending and not process.alive():
                    read_only = bool(_security_of(self.pod, runnable[name][0]).get("readOnlyRootFilesystem"))
                    self.problems.append((name, f"exited {process.popen.returncode} before it was ready "
                                                f"({explain_exit(process.tail(400), read_only)}): "
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
            why = explain_exit(process.tail(400), bool(_security_of(self.pod, runnable[name][0]).get(
                "readOnlyRootFilesystem")))
            why = "" if why == "the container exited" else f" ({why})"
            self.problems.append((name, f"{request['field']} ({request['what']}) never succeeded within "
                                        f"{wait_s:.0f}s{why}: {seen}; log: {process.tail(6)}"))
        for name, (container, _) in runnable.items():
            if name not in passed:
                continue
            seen = [f"{passed[name]} ok"]
            for kind in ("readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if not probe:
                    continue
                request = probe_request(kind, probe, container, pod_ip)
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
        port = container_port(container, "server-http")
        result = call(network, [{"kind": "http", "url": f"http://{pod_ip}:{port}/v2/repository/index",
                                  "headers": {"Content-Type": "application/json"}, "data": "{}", "timeout": 10}])[0]
        listed = result.get("status") == 200 and AGENT_PROBE_MODEL in str(result.get("body"))
        if not listed:
            argv = " ".join(box.argv)
            self.problems.append((container["name"], f"command/args ({argv}): a model the agent places in "
                                                     f"MLSERVER_MODELS_DIR={models_dir} is not in the server's "
                                                     f"repository index ({describe(result)})"))
        else:
            self.details[container["name"]] += f"; agent repository contract ok ({models_dir})"

    def _gate(self, container: dict[str, Any], pod_ip: str) -> dict[str, Any]:
        """The probe that decides readiness: startup, else readiness, else liveness, else the process is up."""
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container.get(kind):
                return probe_request(kind, container[kind], container, pod_ip)
        return {"kind": "alive", "field": "process", "what": "the process stays up"}

    def _probe(self, network: Network, box: Sandboxed, request: dict[str, Any], directory: Path) -> tuple[bool, str]:
        if request["kind"] == "exec":
            return exec_probe(self.netns, box, request["command"], directory / "exec-probe.log")
        if request["kind"] == "alive":
            time.sleep(3)
            return True, "up"
        if request["kind"] == "unsupported":
            self.notes.append(request["what"])
            return True, request["what"]
        result = call(network, [request])[0]
        return succeeded(request["kind"], result), describe(result)

    def _scrape(self, network: Network, targets: list[ScrapeTarget], pod_ip: str, ready: dict[str, str]) -> None:
        live = [t for t in targets if t.container in ready]
        results = call(network, [scrape_request(t, pod_ip) for t in live]) if live else []
        for target, result in zip(live, results, strict=True):
            auth = " with basic auth" if target.basic_auth else " with a bearer token" if target.bearer else ""
            what = f"scrape by {target.monitor} ({target.scheme}://<pod-ip>:{target.port}{target.path}{auth})"
            if result.get("status") != 200 or not is_exposition(str(result.get("body", ""))):
                self.problems.append((target.container, f"{what} fails: {describe(result)}"))
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
    harness.serve_rds_names(sorted({h for o in objects for text in strings(o.manifest) for h in RDS.findall(text)}))
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
