"""The runtime check's surroundings: the network namespaces, the stand-in services and their credentials,
and what a pod's /etc/hosts says (infra/conformance/runtime_contracts.py runs the pods in them)."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from infra.conformance.podspec import PodTemplate, References
from infra.conformance.sandbox import Namespace, Network
from infra.conformance.software import VENV_ML
from infra.conformance.standins import S3, Certificates, Postgres, Redis
from infra.workloads.rds_tls import CA_PATH

DEFAULT_POD_CIDR = "10.0.0.0/16"
KEEP_ENV = "MLPLAT_RUNTIME_KEEP"  # set: keep the pods' logs and volumes after the check
# Stand-in addresses inside the check's network namespace.
POSTGRES_IP, REDIS_IP, S3_IP, NOWHERE_IP = "10.250.0.2", "10.250.0.3", "10.250.0.4", "10.250.0.9"
S3_PORT = 9000
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])")
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
    # The feedback endpoint: the instance's admin for its init container, which creates the endpoint's own login.
    ("feedback-db-admin", "username"): DB_USER, ("feedback-db-admin", "password"): DB_PASSWORD,
    ("feedback-db", "username"): "feedback", ("feedback-db", "password"): "standin-feedback-password",
}


def local_secret(namespace: str, name: str, key: str) -> str:
    if not key:
        return ",".join(k for (n, k) in LOCAL_SECRETS if n == name)
    return LOCAL_SECRETS.get((name, key), f"standin-{name}-{key}")


class Harness:
    """The network namespace, the stand-in services and a scratch directory, made on first use."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mlplat-runtime-"))
        self.pod_cidr = DEFAULT_POD_CIDR
        self.directory.chmod(0o755)
        self.network: Network | None = None
        self.services: list[Postgres | Redis | S3] = []
        self.s3: S3 | None = None
        self.postgres: Postgres | None = None
        self.trust: Path | None = None
        # Files our images' builds put in them, as the check provides them: the RDS CA bundle is the stand-in's CA,
        # so the clients' `verify-full` runs against the same path and really verifies (tests swap in another CA).
        self.image_files: dict[str, Path] = {}
        self._next_ip = 2

    def up(self) -> Network:
        if self.network is None:
            self.network = Network()
            for ip in (POSTGRES_IP, REDIS_IP, S3_IP):
                self.network.add_address(ip)
            certs = Certificates(self.directory / "certs", [POSTGRES_IP, REDIS_IP, "*.rds.amazonaws.com",
                                                            "*.cache.amazonaws.com", "*.amazonaws.com"])
            self.trust = certs.trust_bundle()
            self.image_files[CA_PATH] = certs.directory / "ca.crt"
            self.postgres = postgres = Postgres(self.network, self.directory / "postgres", certs, POSTGRES_IP, 5432,
                                {DB_USER: DB_PASSWORD}, ["mlflow"])
            redis = Redis(self.network, self.directory / "redis", certs, REDIS_IP, 6379, REDIS_TOKEN)
            self.s3 = S3(self.network, self.directory / "s3", S3_IP, S3_PORT, VENV_ML / "bin" / "moto_server")
            for service in (postgres, redis, self.s3):
                self.services.append(service)
                service.start()
        return self.network

    def serve_rds_names(self, names: list[str]) -> None:
        """The PostgreSQL stand-in's certificate also names these RDS endpoints (what `verify-full` checks)."""
        self.up()
        if names:
            assert self.postgres is not None
            self.postgres.serve_names(names)

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


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def decoded(text: str) -> str:
    """A base64 value decoded (configuration passed as `*_BASE64` env), else ''."""
    try:
        return base64.b64decode(text, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def hosts_file(pod: PodTemplate, refs: References, pod_ip: str) -> tuple[str, dict[str, str]]:
    """The pod's /etc/hosts (the kubelet writes one; cluster DNS names are added here) and the aliases of
    stand-in hosts for the cache key."""
    texts = strings(pod.spec)
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

