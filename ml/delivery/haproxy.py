"""The local traffic splitter: HAProxy (Debian's 2.6) in front of the model servers, driven through its runtime API.

Per model one backend `model.<name>` with two servers, `champion` (the platform's model server) and
`challenger` (the challenger model server, started by a rollout), balanced by weighted round robin, so a
share of N % is N requests in every hundred, not a random draw. Weights change with the runtime API's
`set weight <backend>/<server> N` over the admin socket: no reload, no dropped connection. The mirrored
share (shadow traffic) goes to a second backend `mirror.<name>`, whose server is the mirror process
(ml/delivery/mirror.py): it answers with the champion and sends a copy to the challenger; which share is
mirrored is a map (`mirror.map`, model -> percent) changed with `set map`, also without a reload.

Every response gets `X-Request-ID` (HAProxy's unique id, a UUID, also sent to the server) and
`X-Mlplat-Variant` (the server that answered), and every request is logged as one line
`mlplat-request <id> <backend> <server> <status> <Tr ms> <Ta ms> <epoch.ms>` on HAProxy's stdout (the
service log), which the feedback endpoint reads to know which variant answered a request. Prometheus
scrapes HAProxy's built-in exporter (`use-service prometheus-exporter`) on the metrics port.
Everything binds 127.0.0.1. Runtime weights are also written to `weights.json`, from which a restarted
HAProxy's configuration is rendered, so a restart keeps the split.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ml.delivery.splitter import (
    CHALLENGER,
    CHAMPION,
    TOTAL,
    VARIANTS,
    SplitterError,
    check_mirror,
    check_weights,
)
from ml.serving.processes import Service, http_ok

LOG_TAG = "mlplat-request"
MODEL_BACKEND = "model."
MIRROR_BACKEND = "mirror."
CONFIG_FILE = "haproxy.cfg"
MIRROR_MAP = "mirror.map"
WEIGHTS_FILE = "weights.json"
ADMIN_SOCKET = "admin.sock"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def binary() -> str | None:
    return shutil.which("haproxy") or (shutil.which("haproxy", path="/usr/sbin:/sbin"))


@dataclass(frozen=True)
class Layout:
    """Where HAProxy listens and what it sends traffic to (host:port each)."""

    workdir: Path
    host: str
    port: int  # the models' entry point (the V2 inference API as MLServer serves it)
    metrics_port: int  # Prometheus exporter and /healthz
    champion: str  # the platform's model server
    challenger: str  # the challenger model server
    mirror: str  # the mirror process (shadow traffic)

    @property
    def socket_path(self) -> Path:
        return self.workdir / ADMIN_SOCKET

    @property
    def config_path(self) -> Path:
        return self.workdir / CONFIG_FILE

    @property
    def map_path(self) -> Path:
        return self.workdir / MIRROR_MAP

    @property
    def weights_path(self) -> Path:
        return self.workdir / WEIGHTS_FILE


def check_model_name(model: str) -> str:
    if not _NAME.match(model):
        raise ValueError(f"model name {model!r} cannot name a splitter backend (letters, digits, '-', '_')")
    return model


def saved_weights(layout: Layout) -> dict[str, dict[str, int]]:
    try:
        doc = json.loads(layout.weights_path.read_text())
    except FileNotFoundError:
        return {}
    return {m: check_weights(m, w) for m, w in doc.get("weights", {}).items()}


def saved_mirrors(layout: Layout) -> dict[str, int]:
    try:
        doc = json.loads(layout.weights_path.read_text())
    except FileNotFoundError:
        return {}
    return {m: int(p) for m, p in doc.get("mirror", {}).items()}


def render(layout: Layout, models: list[str] | tuple[str, ...]) -> str:
    """haproxy.cfg for `models` (the champion gets everything unless `weights.json` says otherwise)."""
    weights = saved_weights(layout)
    lines = [
        "# Rendered by ml/delivery/haproxy.py; weights and the mirror map change at run time (admin socket).",
        "global",
        f"    stats socket {layout.socket_path} mode 600 level admin",
        "    nbthread 1",
        "    log stdout format raw local0 info",
        "",
        "defaults",
        "    mode http",
        "    log global",
        f'    log-format "{LOG_TAG} %ID %b %s %ST %Tr %Ta %Ts.%ms"',
        "    option http-buffer-request",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    retries 0",
        "",
        "frontend models",
        f"    bind {layout.host}:{layout.port}",
        "    unique-id-format %[uuid()]",
        "    unique-id-header X-Request-ID",
        "    http-request set-var(txn.model) path,field(4,/) if { path_beg /v2/models/ }",
        f"    acl known var(txn.model),map({layout.map_path}) -m found",
        f"    http-request set-var(txn.mirror_pct) var(txn.model),map({layout.map_path},0) if known",
        "    acl mirrored rand(100),sub(txn.mirror_pct) lt 0",
        f"    use_backend {MIRROR_BACKEND}%[var(txn.model)] if known mirrored",
        f"    use_backend {MODEL_BACKEND}%[var(txn.model)] if known",
        "    default_backend mlserver",
        "    http-response set-header X-Request-ID %[unique-id]",
        "    http-response set-header X-Mlplat-Variant %s",
        "",
        "frontend metrics",
        f"    bind {layout.host}:{layout.metrics_port}",
        "    no log",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    http-request return status 200 content-type text/plain string ok if { path /healthz }",
        "    http-request return status 404",
        "",
        "backend mlserver",
        f"    server {CHAMPION} {layout.champion}",
    ]
    for model in models:
        check_model_name(model)
        w = weights.get(model, {CHAMPION: TOTAL, CHALLENGER: 0})
        lines += ["", f"backend {MODEL_BACKEND}{model}", "    balance roundrobin",
                  f"    server {CHAMPION} {layout.champion} weight {w[CHAMPION]}",
                  f"    server {CHALLENGER} {layout.challenger} weight {w[CHALLENGER]}",
                  "", f"backend {MIRROR_BACKEND}{model}",
                  # The mirror answers with the champion's response: the caller sees the champion.
                  f"    server {CHAMPION} {layout.mirror}"]
    return "\n".join(lines) + "\n"


def write(layout: Layout, models: list[str] | tuple[str, ...]) -> Path:
    """Write haproxy.cfg and mirror.map (saved percents, else 0 per model) and check them with `haproxy -c`."""
    layout.workdir.mkdir(parents=True, exist_ok=True)
    mirrors = saved_mirrors(layout)
    layout.map_path.write_text("".join(f"{check_model_name(m)} {mirrors.get(m, 0)}\n" for m in models))
    layout.config_path.write_text(render(layout, models))
    check(layout.config_path)
    return layout.config_path


def check(config: Path) -> None:
    """`haproxy -c -f CONFIG`: raises with HAProxy's own message when the configuration is invalid."""
    exe = binary()
    if exe is None:
        raise FileNotFoundError("haproxy is not installed (Debian package `haproxy`: scripts/bootstrap.sh system)")
    res = subprocess.run([exe, "-c", "-f", str(config)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SplitterError(f"haproxy -c rejected {config}:\n{(res.stdout + res.stderr).strip()}")


class RuntimeAPI:
    """HAProxy's runtime API over the admin socket: one command per connection (non-interactive mode)."""

    def __init__(self, socket_path: Path, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def command(self, line: str) -> str:
        if "\n" in line or ";" in line:
            raise ValueError(f"one runtime API command without ';' or newlines, got {line!r}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise SplitterError(f"HAProxy's admin socket {self.socket_path} does not answer ({exc}); is the "
                                "splitter running? `mlplat local status`") from None
        return b"".join(chunks).decode(errors="replace").strip()

    def checked(self, line: str) -> str:
        """A command that answers nothing (or a harmless note) on success."""
        out = self.command(line)
        lowered = out.lower()
        if any(word in lowered for word in ("unknown", "no such", "error", "not found", "invalid", "require")):
            raise SplitterError(f"HAProxy refused `{line}`: {out}")
        return out


class HAProxySplitter:
    """The Splitter protocol (ml/delivery/splitter.py) on the local HAProxy."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.api = RuntimeAPI(layout.socket_path)

    def weights(self, model: str) -> dict[str, int]:
        out = {}
        for variant in VARIANTS:
            answer = self.api.checked(f"get weight {MODEL_BACKEND}{check_model_name(model)}/{variant}")
            try:
                out[variant] = int(answer.split()[0])
            except (IndexError, ValueError):
                raise SplitterError(f"unexpected answer to get weight for {model}/{variant}: {answer!r}") from None
        return out

    def set_weights(self, model: str, weights: Mapping[str, int]) -> None:
        wanted = check_weights(model, weights)
        # Raise the new share first, then lower the other: at no moment are both servers at 0.
        order = sorted(VARIANTS, key=lambda v: -wanted[v])
        for variant in order:
            self.api.checked(f"set weight {MODEL_BACKEND}{check_model_name(model)}/{variant} {wanted[variant]}")
        self._save(weights={model: wanted})

    def mirror(self, model: str) -> tuple[str | None, int]:
        answer = self.api.checked(f"show map {self.layout.map_path}")
        for line in answer.splitlines():
            parts = line.split()  # `<ref> <key> <value>`
            if len(parts) == 3 and parts[1] == model:
                percent = int(parts[2])
                return (CHALLENGER if percent else None), percent
        raise SplitterError(f"{model} is not in the splitter's mirror map {self.layout.map_path}")

    def set_mirror(self, model: str, variant: str | None, percent: int) -> None:
        _, percent = check_mirror(model, variant, percent)
        self.api.checked(f"set map {self.layout.map_path} {check_model_name(model)} {percent}")
        self._save(mirror={model: percent})

    def _save(self, weights: dict[str, dict[str, int]] | None = None, mirror: dict[str, int] | None = None) -> None:
        path = self.layout.weights_path
        doc = json.loads(path.read_text()) if path.is_file() else {}
        doc.setdefault("weights", {}).update(weights or {})
        doc.setdefault("mirror", {}).update(mirror or {})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        tmp.replace(path)


class HAProxyService(Service):
    """`haproxy -db -f haproxy.cfg` in the foreground (its request log goes to the service log)."""

    name = "haproxy"

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout.workdir)
        self.layout = layout

    def command(self) -> list[str]:
        exe = binary()
        if exe is None:
            raise FileNotFoundError("haproxy is not installed (scripts/bootstrap.sh system)")
        return [exe, "-db", "-f", str(self.layout.config_path)]

    def ready(self) -> bool:
        return http_ok(f"http://{self.layout.host}:{self.layout.metrics_port}/healthz") and \
            self.layout.socket_path.exists()
