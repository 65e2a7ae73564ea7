"""The delivery services of the local platform: the traffic splitter (HAProxy), the feedback endpoint, the
challenger's model server and the shadow mirror (ml/delivery/).

`local up` starts HAProxy and the feedback endpoint (when the `haproxy` package is installed); the
challenger's model server and the mirror are started by `mlplat rollout` when a model gets a challenger,
and stopped by `local down` like every other recorded service. The splitter's port is the models' entry
point (`X-Mlplat-Variant` and `X-Request-ID` on every answer); the model server's own port keeps
answering directly (the champion only, no request id).
"""

from __future__ import annotations

import sys
from pathlib import Path

from local.config import LocalConfig
from ml.delivery import haproxy
from ml.delivery.feedback_server import FeedbackService
from ml.serving.processes import MLServerProcess, Service, http_ok

PORTS_OF: dict[str, tuple[str, ...]] = {
    "haproxy": ("splitter", "splitter_metrics"),
    "feedback": ("feedback",),
    "challenger": ("challenger_http", "challenger_grpc", "challenger_metrics"),
    "mirror": ("mirror",),
}
CHALLENGER_DIR = "challenger"
HAPROXY_DIR = "haproxy"


def layout(cfg: LocalConfig, ports: dict[str, int] | None = None) -> haproxy.Layout:
    p = {**cfg.ports, **(ports or {})}
    return haproxy.Layout(workdir=cfg.path(HAPROXY_DIR), host=cfg.host, port=p["splitter"],
                          metrics_port=p["splitter_metrics"], champion=f"{cfg.host}:{p['http']}",
                          challenger=f"{cfg.host}:{p['challenger_http']}", mirror=f"{cfg.host}:{p['mirror']}")


def request_log(cfg: LocalConfig) -> Path:
    """HAProxy's stdout: the service log, one `mlplat-request` line per routed request."""
    return cfg.path(HAPROXY_DIR, f"{haproxy.HAProxyService.name}.log")


def splitter(cfg: LocalConfig) -> haproxy.HAProxySplitter:
    return haproxy.HAProxySplitter(layout(cfg))


class ChallengerServer(MLServerProcess):
    name = "challenger"


class MirrorService(Service):
    """`python -m ml.delivery.mirror`: answers with the champion, copies requests to the challenger."""

    name = "mirror"

    def __init__(self, cfg: LocalConfig, port: int) -> None:
        super().__init__(cfg.path("mirror"))
        self.cfg, self.port = cfg, port

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ml.delivery.mirror", "--port", str(self.port), "--host", self.cfg.host,
                "--champion", self.cfg.url("http"), "--challenger", self.cfg.url("challenger_http"),
                "--records", str(self.workdir / "shadow.db")]

    def ready(self) -> bool:
        return http_ok(f"http://{self.cfg.host}:{self.port}/healthz")


def build(cfg: LocalConfig, name: str, ports: dict[str, int], extra_env: dict[str, str] | None = None) -> Service:
    if name == "haproxy":
        return haproxy.HAProxyService(layout(cfg, ports))
    if name == "feedback":
        return FeedbackService(cfg.path("feedback"), ports["feedback"], request_log(cfg), list(cfg.models),
                               host=cfg.host)
    if name == "challenger":
        return ChallengerServer(cfg.path(CHALLENGER_DIR), ports["challenger_http"], extra_env=extra_env)
    if name == "mirror":
        return MirrorService(cfg, ports["mirror"])
    raise ValueError(f"unknown delivery service {name!r}; expected one of {', '.join(PORTS_OF)}")


def scrape_targets(cfg: LocalConfig) -> dict[str, str]:
    """Prometheus jobs of the delivery services (a target that is not running is simply down)."""
    return {"haproxy": f"{cfg.host}:{cfg.ports['splitter_metrics']}",
            "challenger": f"{cfg.host}:{cfg.ports['challenger_metrics']}",
            "feedback": f"{cfg.host}:{cfg.ports['feedback']}",
            "experiments": f"{cfg.host}:{cfg.ports['experiments']}"}  # `mlplat experiment` while one runs
