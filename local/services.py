"""The long-running services of the local platform and the reuse/restart rule of `local up`.

Launchers come from `ml/serving/processes.py` (shared with the model tests and
`mlplat bench`); this module only decides, per service, whether to reuse a healthy instance that a
previous `up` started, restart an unhealthy or reconfigured one, or start it fresh, and refuses
early when a port is taken by a program the platform did not start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local import traffic
from local.config import PORT_HELP, LocalConfig, port_env_var
from local.flink_local import FlinkJob
from local.prometheus import AutoRollbackReceiver, PrometheusServer, RetrainReceiver
from local.supervisor import (
    PortInUseError,
    ServiceRecord,
    Supervisor,
    port_in_use,
    port_owner,
    start_ticks,
)
from ml.serving.processes import MLflowServer, MLServerProcess, RedisServer, Service

# Start order; `down` stops in reverse (MLServer before the stores it reads from).
ORDER = ("redis", "mlflow", "mlserver", "haproxy", "feedback", "prometheus", "autorollback", "retrain", "flink")
PORTS_OF = {"redis": ("redis",), "mlflow": ("mlflow",), "mlserver": ("http", "grpc", "metrics"),
            "prometheus": ("prometheus",), "autorollback": ("autorollback",), "retrain": ("retrain",),
            "flink": (),  # the streaming job serves no port
            **traffic.PORTS_OF}
PORT_FLAGS = {"mlflow": "--mlflow-port", "http": "--http-port", "grpc": "--grpc-port",
              "metrics": "--metrics-port", "redis": "--redis-port", "prometheus": "--prometheus-port",
              "autorollback": "--autorollback-port", "retrain": "--retrain-port",
              "experiments": "--experiments-port",
              **{p: f"--{p.replace('_', '-')}-port" for ps in traffic.PORTS_OF.values() for p in ps}}


def port_hint(port_name: str) -> str:
    return (f"Stop that program, or run the platform on another port: "
            f"`mlplat local up {PORT_FLAGS[port_name]} PORT` or {port_env_var(port_name)}=PORT.")


def wanted_ports(cfg: LocalConfig, name: str) -> dict[str, int]:
    return {p: cfg.ports[p] for p in PORTS_OF[name]}


def build(cfg: LocalConfig, name: str, ports: dict[str, int] | None = None,
          extra_env: dict[str, str] | None = None) -> Service:
    """A launcher for service `name` on `ports` (default: the configured ones)."""
    ports = ports or wanted_ports(cfg, name)
    if name == "redis":
        return RedisServer(cfg.path("redis"), ports["redis"], persist=True)  # features survive a restart
    if name == "mlflow":
        return MLflowServer(cfg.path("mlflow"), ports["mlflow"])
    if name == "mlserver":
        return MLServerProcess(cfg.path("mlserver"), ports["http"], extra_env=extra_env)
    if name == "prometheus":
        return PrometheusServer(cfg.path("prometheus"), ports["prometheus"])
    if name == "autorollback":
        return AutoRollbackReceiver(cfg.path("autorollback"), ports["autorollback"], cfg)
    if name == "retrain":
        return RetrainReceiver(cfg.path("retrain"), ports["retrain"], cfg)
    if name in traffic.PORTS_OF:
        return traffic.build(cfg, name, ports, extra_env)
    if name == "flink":
        return FlinkJob(cfg.path("flink"), cfg.path("transactions"), cfg.redis_url or "")
    raise ValueError(f"unknown service {name!r}; expected one of {', '.join(ORDER)}")


def healthy(cfg: LocalConfig, rec: ServiceRecord) -> bool:
    try:
        return build(cfg, rec.name, rec.ports).ready()
    except Exception:  # a probe must never raise
        return False


@dataclass
class Decision:
    name: str
    action: str  # reuse | restart | start
    reason: str = ""
    record: ServiceRecord | None = None


def decide(cfg: LocalConfig, sup: Supervisor, name: str) -> Decision:
    """Reuse a healthy instance on the wanted ports; restart ours if not; check ports before a start."""
    rec = sup.running(name)
    wanted = wanted_ports(cfg, name)
    if rec is not None:
        if rec.ports != wanted:
            return Decision(name, "restart", f"ports changed {rec.ports} -> {wanted}", rec)
        if healthy(cfg, rec):
            return Decision(name, "reuse", f"pid {rec.pid} is healthy", rec)
        return Decision(name, "restart", f"pid {rec.pid} does not answer its health check", rec)
    for port_name, port in wanted.items():
        if port_in_use(port, cfg.host):
            raise PortInUseError(port, PORT_HELP[port_name], port_owner(port), port_hint(port_name))
    return Decision(name, "start")


def check_restart_ports(cfg: LocalConfig, decision: Decision) -> None:
    """After stopping our old instance, its new ports must be free of other programs."""
    for port_name, port in wanted_ports(cfg, decision.name).items():
        if port_in_use(port, cfg.host):
            raise PortInUseError(port, PORT_HELP[port_name], port_owner(port), port_hint(port_name))


def launch(cfg: LocalConfig, sup: Supervisor, name: str, timeout_s: float = 180.0,
           extra_env: dict[str, str] | None = None, info: dict[str, object] | None = None,
           url: str = "") -> ServiceRecord:
    """Start service `name` detached (own session), wait until it is ready, record its pid."""
    service = build(cfg, name, extra_env=extra_env)
    try:
        service.start(timeout_s)
    except BaseException:  # Ctrl-C or a failed start: no unrecorded process may outlive this command
        service.stop()
        raise
    proc = service.proc
    assert proc is not None
    rec = ServiceRecord(
        name=name, pid=proc.pid, ports=wanted_ports(cfg, name), cmdline=service.command(),
        log=str(service.log_path), start_ticks=start_ticks(proc.pid), url=url, info=dict(info or {}),
    )
    sup.record(rec)
    # The Popen object is dropped on purpose: the service must outlive this command. Python's
    # Popen.__del__ would warn about a running child; detaching returncode polling avoids that.
    proc.returncode = 0
    return rec


def ensure(cfg: LocalConfig, sup: Supervisor, decision: Decision, say: Callable[[str], None],
           force_restart: bool = False, **launch_kw: object) -> tuple[ServiceRecord, str]:
    """Carry out `decision`: returns the running record and what was done (reused/restarted/started)."""
    if decision.action == "reuse" and not force_restart:
        assert decision.record is not None
        return decision.record, "reused"
    if decision.record is not None:
        reason = "its configuration changed" if decision.action == "reuse" else decision.reason
        say(f"stopping {decision.name} (pid {decision.record.pid}): {reason}")
        _, busy = sup.stop(decision.name)
        if busy:
            raise RuntimeError(f"{decision.name} stopped but port(s) {busy} are still in use")
        check_restart_ports(cfg, decision)
    rec = launch(cfg, sup, decision.name, **launch_kw)  # type: ignore[arg-type]
    return rec, "restarted" if decision.record is not None else "started"


def ml_env_bin() -> Path:
    """bin/ of the running (ML) environment: where the `mlflow` and `mlserver` scripts live."""
    return Path(sys.executable).parent


def missing_entry_points() -> list[str]:
    return [exe for exe in ("mlflow", "mlserver") if not os.access(ml_env_bin() / exe, os.X_OK)]
