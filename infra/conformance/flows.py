"""The network flows the platform depends on, derived from its own wiring (no list kept by hand):

- every host:port a container is configured to call: URLs and `host:port` pairs in its env (values and
  ConfigMap keys it reads), args and command, `*_HOST` / `*_PORT` env pairs, and the ConfigMaps it mounts
  or reads whole (Feast's feature_store.yaml, the KFP bootstrap document, ...);
- every Alertmanager receiver URL (the `alertmanager.yaml` of the Secrets the operator's Alertmanagers read);
- every scrape: ServiceMonitor and PodMonitor endpoints, from the Prometheus pods to the target pods;
- every call the API server makes: admission webhooks, CRD conversion webhooks, aggregated APIs
  (APIService), which start at the control plane, outside the pod network;
- what load balancers send: Services of type LoadBalancer and Ingress backends (IP targets, from the VPC);
- DNS to kube-dns for every pod that names a host, and the Kubernetes API for every pod whose service
  account is bound to a Role or ClusterRole.

A destination is a Service (resolved to its pods' container port, as kube-proxy does), pods scraped
directly, or an address outside the pod network (the AWS data services in the VPC, AWS APIs, nodes).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from infra.conformance.model import KubeObject
from infra.conformance.selectors import Index, PodTemplate, matches, namespace_scope

# Where a flow starts or ends when it is not a pod of the cluster network.
CONTROL_PLANE = "control plane"  # EKS API server, through its ENIs in the cluster's subnets
LOAD_BALANCER = "load balancer"  # an NLB/ALB in the VPC sending to pod IPs (IP targets)
NODE = "node"  # a node's address (host-network pods, the kubelet)
VPC_SERVICE = "VPC data service"  # RDS, ElastiCache, MSK, OpenSearch in the VPC
INTERNET = "outside the VPC"  # AWS APIs and other public endpoints

_URL = re.compile(r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?:[^@/\s\"',]*@)?(?P<host>[a-zA-Z0-9][a-zA-Z0-9.-]*"
                  r"[a-zA-Z0-9])(?::(?P<port>\d{2,5}))?(?=[/\s\"',;<]|$)")  # `<`: a URL that ends an XML element
_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "rediss": 6379, "redis": 6379, "postgresql": 5432,
                  "postgres": 5432}
_LOCAL = {"localhost", "127.0.0.1", "0.0.0.0", "::"}
# RDS, ElastiCache, MSK and OpenSearch endpoints (their hosts resolve to addresses in the VPC), private zones.
_VPC_HOSTS = re.compile(r"\.(rds|cache|es)\.amazonaws\.com$|\.kafka\.[a-z0-9-]+\.amazonaws\.com$|\.internal$")
_DATA_KEYS = ("data", "stringData")


@dataclass(frozen=True)
class Target:
    """The called end of a flow."""

    kind: str  # "service" | "pods" | "external" | "missing" (a Service neither the plan nor a release makes)
    label: str
    service: KubeObject | None = None
    service_port: dict[str, Any] | None = None
    pods: tuple[PodTemplate, ...] = ()
    container_port: int | None = None
    place: str = ""  # for "external": VPC_SERVICE | INTERNET | NODE | CONTROL_PLANE


@dataclass(frozen=True)
class Flow:
    source: PodTemplate | None  # None: a caller outside the pod network (`origin`)
    target: Target
    port: int  # the port the caller sends to (a Service's port for a ClusterIP)
    why: str
    protocol: str = "TCP"
    origin: str = CONTROL_PLANE

    @property
    def source_label(self) -> str:
        return self.source.owner.ref if self.source is not None else self.origin


# ---------------------------------------------------------------- resolving a host:port

def _service_port(service: KubeObject, port: int) -> dict[str, Any] | None:
    return next((p for p in (service.manifest.get("spec") or {}).get("ports") or [] if p.get("port") == port), None)


def container_port(pod: PodTemplate, target: Any) -> int | None:
    """A Service's targetPort on one pod: a number as is, a name through the pod's container ports."""
    if isinstance(target, int):
        return target
    for c in pod.containers:
        for p in c.get("ports") or []:
            if p.get("name") == target and isinstance(p.get("containerPort"), int):
                return int(p["containerPort"])
    return None


def service_pods(idx: Index, service: KubeObject) -> list[PodTemplate]:
    selector = (service.manifest.get("spec") or {}).get("selector")
    return idx.pods_in(service.namespace, {"matchLabels": selector}) if selector else []


def resolve(idx: Index, host: str, port: int | None, namespace: str) -> Target | None:
    """A host (cluster DNS name or address) and port -> the target, None when it names nothing we can place."""
    host = host.lower().rstrip(".")
    if host in _LOCAL or port is None:
        return None
    parts = host.removesuffix(".cluster.local").removesuffix(".svc").split(".")
    # <service>, <service>.<namespace>[.svc[.cluster.local]]: a cluster name; anything else is an address.
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in idx.namespaces):
        name, ns = parts[0], parts[1] if len(parts) == 2 else namespace
        service = idx.find("Service", ns, name)
        if service is None:
            return None if len(parts) == 1 else Target("missing", f"Service {ns}/{name}:{port}")
        sp = _service_port(service, port)
        pods = tuple(service_pods(idx, service))
        target = sp.get("targetPort", sp.get("port")) if sp else None
        cport = container_port(pods[0], target) if pods and sp else (target if isinstance(target, int) else None)
        return Target("service", f"Service {ns}/{name}:{port}", service, sp, pods, cport)
    place = VPC_SERVICE if _VPC_HOSTS.search(host) else INTERNET
    return Target("external", f"{host}:{port}", place=place, container_port=port)


def endpoints_in(text: str) -> Iterator[tuple[str, int | None]]:
    """(host, port) of every URL or host:port in a text; URLs without a port get their scheme's default."""
    for m in _URL.finditer(text):
        scheme, host, port = m.group("scheme"), m.group("host"), m.group("port")
        if scheme == "s3":  # a bucket: the S3 API over HTTPS (the gateway endpoint keeps S3's public addresses)
            yield "s3.amazonaws.com", 443
            continue
        if port is None and scheme is None:
            continue  # a bare word, not an address
        if "." not in host and port is None:
            continue
        number = int(port) if port else _DEFAULT_PORTS.get(scheme or "")
        yield host, number


# ---------------------------------------------------------------- configured addresses

def _env_values(pod: PodTemplate, container: dict[str, Any], idx: Index) -> dict[str, str]:
    out: dict[str, str] = {}
    for env in container.get("env") or []:
        if "value" in env:
            out[str(env["name"])] = str(env["value"])
            if str(env["name"]).endswith("_BASE64"):  # e.g. Feast's FEATURE_STORE_YAML_BASE64
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    out[str(env["name"])] = base64.b64decode(str(env["value"])).decode()
        ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            cm = idx.find("ConfigMap", pod.namespace, str(ref.get("name")))
            value = ((cm.manifest.get("data") or {}) if cm else {}).get(ref.get("key"))
            if value is not None:
                out[str(env["name"])] = str(value)
    return out


def _read_configmaps(pod: PodTemplate, idx: Index) -> list[KubeObject]:
    names = {str((v.get("configMap") or {}).get("name")) for v in pod.spec.get("volumes") or [] if v.get("configMap")}
    for v in pod.spec.get("volumes") or []:
        names |= {str(s["configMap"].get("name")) for s in (v.get("projected") or {}).get("sources") or []
                  if s.get("configMap")}
    for c in pod.containers:
        names |= {str(e["configMapRef"].get("name")) for e in c.get("envFrom") or [] if e.get("configMapRef")}
    return [cm for name in sorted(names) if (cm := idx.find("ConfigMap", pod.namespace, name)) is not None]


_XML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _without_comment_lines(text: str) -> str:
    # A comment in a mounted configuration file (a whole `#` line of YAML, properties or shell; an XML comment)
    # configures no call: the licence headers of the Flink operator's config files name www.apache.org, which
    # the operator never calls.
    text = _XML_COMMENT.sub("", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def configured(idx: Index) -> Iterator[Flow]:
    for pod in idx.pods:
        for c in pod.containers:
            where = f"{pod.owner.ref} container {c.get('name')}"
            env = _env_values(pod, c, idx)
            texts = [(f"env {k}", v) for k, v in env.items()]
            texts += [("args", str(a)) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
            for key, host in env.items():
                if key.endswith("HOST") and (port := env.get(key[:-4] + "PORT", "")).isdigit():
                    texts.append((f"env {key}/{key[:-4]}PORT", f"{host}:{port}"))
            for what, text in texts:
                for host, port in endpoints_in(text):
                    if (target := resolve(idx, host, port, pod.namespace)) is not None:
                        yield Flow(pod, target, int(port or 0), f"{where} {what}")
        for cm in _read_configmaps(pod, idx):
            for key, text in (cm.manifest.get("data") or {}).items():
                for host, port in endpoints_in(_without_comment_lines(str(text))):
                    if (target := resolve(idx, host, port, pod.namespace)) is not None:
                        yield Flow(pod, target, int(port or 0), f"{pod.owner.ref} reads {cm.ref} key {key}")


# ---------------------------------------------------------------- alert receivers

def _secret_text(secret: KubeObject, key: str) -> str | None:
    if key in (secret.manifest.get("stringData") or {}):
        return str(secret.manifest["stringData"][key])
    raw = (secret.manifest.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(str(raw)).decode()
    except (ValueError, UnicodeDecodeError):
        return str(raw)


def _urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("url", "api_url") and isinstance(value, str):
                yield value
            else:
                yield from _urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from _urls(item)


def receivers(idx: Index) -> Iterator[Flow]:
    """Alertmanager pods (labelled `app.kubernetes.io/name: alertmanager` by the operator) -> receiver URLs."""
    for secret in idx.of_kind("Secret"):
        text = _secret_text(secret, "alertmanager.yaml")
        if not text:
            continue
        config = yaml.safe_load(text) or {}
        senders = idx.pods_in(secret.namespace, {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}})
        for receiver in config.get("receivers") or []:
            for url in _urls(receiver):
                for host, port in endpoints_in(url):
                    target = resolve(idx, host, port, secret.namespace)
                    for pod in senders if target is not None else []:
                        yield Flow(pod, target, int(port or 0), f"{secret.ref} receiver {receiver.get('name')} {url}")


# ---------------------------------------------------------------- scrapes

def _prometheus_pods(idx: Index) -> list[PodTemplate]:
    return [p for p in idx.pods if p.labels.get("app.kubernetes.io/name") == "prometheus"
            and "operator.prometheus.io/name" in p.labels]


def scrapes(idx: Index) -> Iterator[Flow]:
    scrapers = _prometheus_pods(idx)
    for mon in idx.of_kind("ServiceMonitor"):
        spec = mon.manifest.get("spec") or {}
        scope = namespace_scope(spec.get("namespaceSelector"), mon.namespace, idx.namespaces)
        services = [s for s in idx.of_kind("Service") if s.namespace in scope and matches(spec.get("selector"),
                                                                                           s.labels)]
        for endpoint in spec.get("endpoints") or []:
            for service in services:
                for sp in (service.manifest.get("spec") or {}).get("ports") or []:
                    named = endpoint.get("port") is not None and sp.get("name") == endpoint.get("port")
                    by_target = endpoint.get("targetPort") is not None and \
                        sp.get("targetPort") == endpoint.get("targetPort")
                    if not (named or by_target):
                        continue
                    yield from _scrape(idx, scrapers, mon, service, sp)
    for mon in idx.of_kind("PodMonitor"):
        spec = mon.manifest.get("spec") or {}
        scope = namespace_scope(spec.get("namespaceSelector"), mon.namespace, idx.namespaces)
        for endpoint in spec.get("podMetricsEndpoints") or []:
            for ns in sorted(scope):
                for pod in idx.pods_in(ns, spec.get("selector")):
                    port = container_port(pod, endpoint.get("port") or endpoint.get("portNumber"))
                    if port is None:
                        continue
                    target = Target("pods", f"{pod.owner.ref}:{port}", pods=(pod,), container_port=port)
                    for scraper in scrapers:
                        yield Flow(scraper, target, port, f"{mon.ref} scrapes {pod.owner.ref}")


def _scrape(idx: Index, scrapers: list[PodTemplate], mon: KubeObject, service: KubeObject,
            sp: dict[str, Any]) -> Iterator[Flow]:
    pods = service_pods(idx, service)
    if not pods:  # endpoints kept by a controller (the kubelet) or the cluster (the API server)
        place = CONTROL_PLANE if service.name == "kubernetes" and service.namespace == "default" else NODE
        target = Target("external", f"{service.ref} endpoints:{sp.get('targetPort', sp.get('port'))}", place=place,
                        container_port=int(sp.get("targetPort") or sp.get("port")) if not isinstance(
                            sp.get("targetPort"), str) else int(sp.get("port")))
        for scraper in scrapers:
            yield Flow(scraper, target, int(target.container_port or 0), f"{mon.ref} scrapes {service.ref}")
        return
    for pod in pods:
        port = container_port(pod, sp.get("targetPort", sp.get("port")))
        if port is None:
            continue
        target = Target("pods", f"{pod.owner.ref}:{port}", pods=(pod,), container_port=port)
        for scraper in scrapers:
            yield Flow(scraper, target, port, f"{mon.ref} scrapes {pod.owner.ref} through {service.ref}")


# ---------------------------------------------------------------- calls from the API server

def _service_ref(idx: Index, ref: dict[str, Any] | None, why: str) -> Iterator[Flow]:
    if not ref or not ref.get("name"):
        return
    service = idx.find("Service", str(ref.get("namespace")), str(ref["name"]))
    port = int(ref.get("port") or 443)
    if service is None:
        yield Flow(None, Target("missing", f"Service {ref.get('namespace')}/{ref['name']}:{port}"), port, why)
        return
    target = resolve(idx, f"{service.name}.{service.namespace}", port, service.namespace)
    if target is not None:
        yield Flow(None, target, port, why)


def api_server_calls(idx: Index) -> Iterator[Flow]:
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for obj in idx.of_kind(kind):
            for hook in obj.manifest.get("webhooks") or []:
                yield from _service_ref(idx, (hook.get("clientConfig") or {}).get("service"),
                                        f"{obj.ref} webhook {hook.get('name')}")
    for crd in idx.of_kind("CustomResourceDefinition"):
        conversion = (crd.manifest.get("spec") or {}).get("conversion") or {}
        if conversion.get("strategy") == "Webhook":
            yield from _service_ref(idx, ((conversion.get("webhook") or {}).get("clientConfig") or {}).get("service"),
                                    f"{crd.ref} conversion webhook")
    for api in idx.of_kind("APIService"):
        yield from _service_ref(idx, (api.manifest.get("spec") or {}).get("service"), f"{api.ref}")


# ---------------------------------------------------------------- load balancers

def load_balancers(idx: Index) -> Iterator[Flow]:
    """Services of type LoadBalancer and Ingresses: the load balancer sends to the pods' container ports
    from its own addresses in the VPC (the AWS Load Balancer Controller's IP targets)."""
    for service in idx.of_kind("Service"):
        if (service.manifest.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        for sp in (service.manifest.get("spec") or {}).get("ports") or []:
            for pod in service_pods(idx, service):
                port = container_port(pod, sp.get("targetPort", sp.get("port")))
                if port is not None:
                    yield Flow(None, Target("pods", f"{pod.owner.ref}:{port}", pods=(pod,), container_port=port),
                               port, f"{service.ref} (type LoadBalancer) port {sp.get('port')}", origin=LOAD_BALANCER)
    for ingress in idx.of_kind("Ingress"):
        spec = ingress.manifest.get("spec") or {}
        backends = [spec.get("defaultBackend") or {}] + [
            path.get("backend") or {} for rule in spec.get("rules") or []
            for path in (rule.get("http") or {}).get("paths") or []]
        for backend in backends:
            ref = backend.get("service") or {}
            service = idx.find("Service", ingress.namespace, str(ref.get("name")))
            number = (ref.get("port") or {}).get("number")
            name = (ref.get("port") or {}).get("name")
            sp = next((p for p in ((service.manifest.get("spec") or {}).get("ports") or []) if service
                       and (p.get("port") == number or (name and p.get("name") == name))), None) if service else None
            for pod in service_pods(idx, service) if service and sp else []:
                port = container_port(pod, sp.get("targetPort", sp.get("port")))
                if port is not None:
                    yield Flow(None, Target("pods", f"{pod.owner.ref}:{port}", pods=(pod,), container_port=port),
                               port, f"{ingress.ref} backend {service.ref}", origin=LOAD_BALANCER)


# ---------------------------------------------------------------- DNS and the Kubernetes API

def _bound_service_accounts(idx: Index) -> set[tuple[str, str]]:
    out = set()
    for binding in [*idx.of_kind("RoleBinding"), *idx.of_kind("ClusterRoleBinding")]:
        for subject in binding.manifest.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount":
                out.add((str(subject.get("namespace") or binding.namespace), str(subject.get("name"))))
    return out


def platform_services(idx: Index, named_hosts: set[int]) -> Iterator[Flow]:
    """kube-dns for every pod that names a host; the API server for every pod whose account has RBAC."""
    dns = resolve(idx, "kube-dns.kube-system", 53, "kube-system")
    api = resolve(idx, "kubernetes.default", 443, "default")
    bound = _bound_service_accounts(idx)
    for pod in idx.pods:
        if id(pod) in named_hosts and dns is not None:
            yield Flow(pod, dns, 53, f"{pod.owner.ref} resolves service names", protocol="UDP")
        account = str(pod.spec.get("serviceAccountName") or pod.spec.get("serviceAccount") or "default")
        if api is not None and (pod.namespace, account) in bound:
            yield Flow(pod, api, 443, f"{pod.owner.ref} calls the Kubernetes API as {pod.namespace}/{account}")


def derive(idx: Index) -> list[Flow]:
    flows = [f for f in [*configured(idx), *receivers(idx), *scrapes(idx), *api_server_calls(idx),
                         *load_balancers(idx)]
             if f.source is None or not any(f.source is p for p in f.target.pods)]  # a server naming itself
    named = {id(f.source) for f in flows if f.source is not None}
    flows += list(platform_services(idx, named))
    return flows
