"""Local stand-ins for the managed services the containers call (RDS PostgreSQL, ElastiCache Redis, S3),
inside the check's network namespace at the addresses the plan's host names resolve to there.

Both speak TLS as their AWS counterparts do (RDS and ElastiCache here require it): certificates come
from a throw-away CA made with `openssl`; the sandboxes trust it through their system bundle
(`trust_bundle`). PostgreSQL is Debian's 15 (RDS runs the BOM's 16: the wire protocol, TLS and SCRAM
authentication the containers use are the same); Redis is Debian's redis-server 7.0 (ElastiCache 7.1);
S3 is moto's server from `.venv-ml` (plain HTTP; the sandboxes reach it through `AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.conformance.sandbox import Namespace, Network, Process, SandboxUnavailable

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
POSTGRES_UID_NAME = "postgres"


def _run(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


@dataclass
class Certificates:
    directory: Path
    names: list[str]

    def __post_init__(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mlplat-check-ca",
              "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt")])
        self.issue(d, self.names)

    def issue(self, directory: Path, names: list[str]) -> tuple[Path, Path]:
        """A server certificate and key for `names` (IP addresses or DNS names) signed by this CA, in `directory`
        as server.crt / server.key."""
        d, ca = directory, self.directory
        d.mkdir(parents=True, exist_ok=True)
        sans = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=standin", "-keyout",
              str(d / "server.key"), "-out", str(d / "server.csr")])
        (d / "ext.cnf").write_text(f"subjectAltName={sans}\n")
        _run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(ca / "ca.crt"), "-CAkey",
              str(ca / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"),
              "-out", str(d / "server.crt")])
        (d / "server.key").chmod(0o600)
        return d / "server.crt", d / "server.key"

    def trust_bundle(self) -> Path:
        """This machine's CA bundle plus the check's CA (bound over the system bundle in the sandboxes)."""
        bundle = self.directory / "ca-certificates.crt"
        bundle.write_text(SYSTEM_BUNDLE.read_text() + "\n" + (self.directory / "ca.crt").read_text())
        bundle.chmod(0o644)
        return bundle


def _prefix(network: Namespace | None) -> list[str]:
    """The command prefix that runs in `network` (None: this machine's own network, for tests of a client)."""
    return network.prefix if network is not None else []


def _wait_port(network: Namespace | None, ip: str, port: int, process: Process, what: str,
               timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    probe = f"import socket; socket.create_connection(('{ip}', {port}), 1).close()"
    while time.monotonic() < deadline:
        if not process.alive():
            raise SandboxUnavailable(f"{what} stand-in exited: {process.tail()}")
        if subprocess.run([*_prefix(network), "python3", "-c", probe], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise SandboxUnavailable(f"{what} stand-in did not listen on {ip}:{port}: {process.tail()}")


@dataclass
class Postgres:
    """PostgreSQL with TLS on `ip:port`, a SCRAM login per (user, password) and the named databases. The logins
    are RDS master users: no superuser, but CREATEROLE and CREATEDB (what a workload that provisions its own
    login and database, the feedback endpoint's init container, relies on)."""

    network: Namespace | None  # None: on this machine's network (tests of the feedback store)
    directory: Path
    certs: Certificates
    ip: str
    port: int
    logins: dict[str, str]
    databases: list[str]
    process: Process | None = field(default=None, init=False)
    names: list[str] = field(default_factory=list, init=False)  # what its certificate names beyond the CA's list

    def start(self) -> None:
        bindir = _postgres_bin()
        if bindir is None or shutil.which("setpriv") is None:
            raise SandboxUnavailable("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
        data = self.directory / "data"
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, POSTGRES_UID_NAME, POSTGRES_UID_NAME)
        for name in ("server.crt", "server.key"):
            shutil.copy(self.certs.directory / name, self.directory / name)
            shutil.chown(self.directory / name, POSTGRES_UID_NAME, POSTGRES_UID_NAME)
        as_postgres = _AS_POSTGRES
        pwfile = self.directory / "pwfile"
        pwfile.write_text("standin\n")
        shutil.chown(pwfile, POSTGRES_UID_NAME, POSTGRES_UID_NAME)
        _run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", "postgres",
              f"--pwfile={pwfile}"])
        (data / "pg_hba.conf").write_text("hostssl all all 0.0.0.0/0 scram-sha-256\nlocal all all trust\n")
        self.process = Process([
            *as_postgres, str(bindir / "postgres"), "-D", str(data), "-c", f"listen_addresses={self.ip}",
            "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.directory}", "-c", "ssl=on",
            "-c", f"ssl_cert_file={self.directory / 'server.crt'}",
            "-c", f"ssl_key_file={self.directory / 'server.key'}", "-c", "fsync=off", "-c", "max_connections=200"],
            self.directory / "postgres.log", self.network)
        _wait_port(self.network, self.ip, self.port, self.process, "PostgreSQL")
        statements = [f"CREATE ROLE \"{u}\" LOGIN CREATEROLE CREATEDB PASSWORD '{p}'" for u, p in self.logins.items()]
        owner = next(iter(self.logins), "postgres")
        statements += [f'CREATE DATABASE "{db}" OWNER "{owner}"' for db in self.databases]
        for sql in statements:
            self._sql(sql)

    def _sql(self, sql: str) -> None:
        """As the superuser, over the server's Unix socket."""
        bindir = _postgres_bin()
        assert bindir is not None
        _run([*_prefix(self.network), *_AS_POSTGRES, str(bindir / "psql"), "-h", str(self.directory), "-p",
              str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql])

    def serve_names(self, names: list[str]) -> None:
        """Present a certificate that also names `names` (the host names the plan's clients dial, which a
        `verify-full` client checks): a new one from the same CA, which PostgreSQL loads on a configuration reload."""
        wanted = sorted(set(self.names) | set(names))
        if wanted == self.names:
            return
        crt, key = self.certs.issue(self.directory / "issued", [*self.certs.names, *wanted])
        for source, name in ((crt, "server.crt"), (key, "server.key")):
            shutil.copy(source, self.directory / name)
            shutil.chown(self.directory / name, POSTGRES_UID_NAME, POSTGRES_UID_NAME)
        self._sql("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the postmaster reloads on the signal; connections after it get the new certificate
        self.names = wanted

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


_AS_POSTGRES = ["setpriv", "--reuid", POSTGRES_UID_NAME, "--regid", POSTGRES_UID_NAME, "--clear-groups"]


def _postgres_bin() -> Path | None:
    return next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


@dataclass
class Redis:
    """redis-server with TLS only on `ip:port` and AUTH `password` (ElastiCache with in-transit encryption)."""

    network: Network
    directory: Path
    certs: Certificates
    ip: str
    port: int
    password: str
    process: Process | None = field(default=None, init=False)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SandboxUnavailable("redis-server is not installed (Debian: apt-get install -y redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        c = self.certs.directory
        self.process = Process([binary, "--bind", self.ip, "--port", "0", "--tls-port", str(self.port),
                                "--tls-cert-file", str(c / "server.crt"), "--tls-key-file", str(c / "server.key"),
                                "--tls-ca-cert-file", str(c / "ca.crt"), "--tls-auth-clients", "no",
                                "--requirepass", self.password, "--save", "", "--appendonly", "no",
                                "--dir", str(self.directory)], self.directory / "redis.log", self.network)
        _wait_port(self.network, self.ip, self.port, self.process, "Redis")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class S3:
    """moto's S3 on `ip:port` with the buckets the pods name (created empty, in `region`)."""

    network: Network
    directory: Path
    ip: str
    port: int
    binary: Path
    process: Process | None = field(default=None, init=False)
    buckets: set[str] = field(default_factory=set, init=False)

    def start(self) -> None:
        if not self.binary.exists():
            raise SandboxUnavailable(f"{self.binary} is missing (scripts/bootstrap.sh ml installs moto[server])")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = Process([str(self.binary), "-H", self.ip, "-p", str(self.port)], self.directory / "s3.log",
                               self.network)
        _wait_port(self.network, self.ip, self.port, self.process, "S3")

    def bucket(self, name: str, region: str) -> None:
        if name in self.buckets:
            return
        body = (f"<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint>"
                "</CreateBucketConfiguration>")
        code = (f"import urllib.request as u; u.urlopen(u.Request('http://{self.ip}:{self.port}/{name}', "
                f"data={body.encode()!r}, method='PUT'), timeout=10)")
        _run([*self.network.prefix, "python3", "-c", code])
        self.buckets.add(name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
