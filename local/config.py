"""Settings of the local platform: state directory, fixed default ports, optional parts.

Ports are fixed (not random) so bookmarks and `mlplat local status` stay meaningful between runs;
the defaults sit above the common development ports (5000, 6379, 8080, 9090). Each can be changed
with a flag or an environment variable (`MLPLAT_<NAME>_PORT`, e.g. `MLPLAT_MLFLOW_PORT=15500`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from contracts import model_registry
from stacks.schema import PipelinesConfig, PredictionCacheConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO_ROOT / ".local"

DEFAULT_PORTS: dict[str, int] = {
    "mlflow": 15000,
    "http": 18080,  # MLServer REST (V2 inference protocol)
    "grpc": 18081,  # MLServer gRPC
    "metrics": 18082,  # MLServer Prometheus metrics
    "redis": 16379,
    "prometheus": 19090,
    "autorollback": 19095,  # automatic-rollback receiver (runbooks/autorollback.py), with Prometheus only
    "retrain": 19096,  # drift-retrain receiver (ml/pipelines/retrain.py), with Prometheus only
    # Delivery (ml/delivery/): the traffic splitter (HAProxy) in front of the model servers, the challenger's
    # model server (started by a rollout or shadow), the shadow mirror and the feedback endpoint.
    "splitter": 18090,
    "splitter_metrics": 18091,
    "mirror": 18092,
    "challenger_http": 18083,
    "challenger_grpc": 18084,
    "challenger_metrics": 18085,
    "feedback": 19097,
    "experiments": 19098,  # Prometheus metrics of a running A/B or bandit controller (`mlplat experiment`)
}
PORT_HELP = {
    "mlflow": "MLflow tracking server and UI",
    "http": "MLServer HTTP (inference)",
    "grpc": "MLServer gRPC (inference)",
    "metrics": "MLServer Prometheus metrics",
    "redis": "redis-server (Feast online store with --redis)",
    "prometheus": "local Prometheus (when installed)",
    "autorollback": "automatic-rollback receiver (alerts from the local Prometheus)",
    "retrain": "drift-retrain receiver (runs a model's pipeline when its drift alert fires)",
    "splitter": "traffic splitter (HAProxy): the models' inference entry point, champion/challenger weights",
    "splitter_metrics": "traffic splitter's Prometheus exporter",
    "mirror": "shadow mirror (answers with the champion, copies requests to the challenger)",
    "challenger_http": "challenger model server HTTP (started by `mlplat rollout`)",
    "challenger_grpc": "challenger model server gRPC",
    "challenger_metrics": "challenger model server Prometheus metrics",
    "feedback": "feedback endpoint (outcomes per request id)",
    "experiments": "metrics of a running experiment controller (`mlplat experiment ab|bandit`)",
}


def port_env_var(name: str) -> str:
    return f"MLPLAT_{name.upper()}_PORT"


def default_ports(environ: dict[str, str] | None = None) -> dict[str, int]:
    """DEFAULT_PORTS overridden by MLPLAT_<NAME>_PORT; a bad value names the variable."""
    env = os.environ if environ is None else environ
    ports = dict(DEFAULT_PORTS)
    for name in ports:
        raw = env.get(port_env_var(name))
        if raw:
            ports[name] = parse_port(raw, port_env_var(name))
    return ports


def parse_port(raw: str | int, what: str) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {raw!r} is not a port number") from None
    if not 1024 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is outside 1024..65535")
    return port


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must be >= 0")
    return value


# The optional Java engines of `mlplat local up --engines` (the default demo starts none: no JVM): `spark`
# computes the batch features (local/spark_local.py), `flink` streams the online ones (local/flink_local.py).
ENGINES = ("spark", "flink")


def parse_engines(text: str) -> tuple[str, ...]:
    """`--engines spark,flink` (comma-separated); an unknown name is an error naming the allowed ones."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise ValueError(f"--engines: unknown engine(s) {', '.join(unknown)}; allowed: {', '.join(ENGINES)}")
    return names


@dataclass
class LocalConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    ports: dict[str, int] = field(default_factory=default_ports)
    data_dir: Path | None = None  # None: the product's generated sample data
    redis: bool = False  # Feast online store in a local redis-server instead of SQLite
    engines: tuple[str, ...] = ()  # optional Java engines (ENGINES): "spark" batch features, "flink" streaming
    models: tuple[str, ...] = field(default_factory=model_registry.names)  # registered models
    retrain: bool = False  # retrain even if the registry holds a version trained on the same data
    gates_stack: Path | None = None  # stack file whose models.*.qualityGates apply with data_dir
    prometheus: bool = True  # start a local Prometheus when the binary is installed
    otlp_endpoint: str | None = None  # OTLP gRPC collector for MLServer traces; None: tracing off
    auto_rollback: bool = True  # with Prometheus: roll a breaching new version back (runbooks/autorollback.py)
    splitter: bool = True  # HAProxy + feedback endpoint in front of the model server (when haproxy is installed)
    auto_retrain: bool = True  # with Prometheus: run a model's pipeline when its drift alert fires (ml/pipelines)
    # Prometheus scrape + rule evaluation interval; the rollback rules' windows scale with it (tests: 1).
    prometheus_interval_s: int = field(default_factory=lambda: int(os.environ.get("MLPLAT_PROMETHEUS_INTERVAL_S", "5")))
    host: str = "127.0.0.1"
    # Drift retraining (the schema's `workloads.pipelines` defaults; env overrides for tests and demos):
    # observations before a model's drift is measured, and the retrain receiver's cool-down.
    drift_min_samples: int = field(default_factory=lambda: _env_int(
        "MLPLAT_DRIFT_MIN_SAMPLES", PipelinesConfig().retrain_min_samples))
    # Seconds a cached prediction of a deterministic model lives in the local Redis (`--redis` only; 0: no
    # cache): the schema's `workloads.predictionCache` default, as on the cluster.
    prediction_cache_ttl_s: int = field(default_factory=lambda: _env_int(
        "MLPLAT_PREDICTION_CACHE_TTL_S", PredictionCacheConfig().ttl_seconds))
    retrain_cooldown_s: int = field(default_factory=lambda: _env_int(
        "MLPLAT_RETRAIN_COOLDOWN_S", PipelinesConfig().retrain_cooldown_minutes * 60))

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        registered = model_registry.names()
        unknown = [m for m in self.models if m not in registered]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; expected some of {', '.join(registered)}")
        if not self.models:
            raise ValueError("no model selected")
        used: dict[int, str] = {}
        for name, port in self.ports.items():
            parse_port(port, f"{name} port")
            if port in used:
                raise ValueError(f"the {used[port]} and {name} ports are both {port}; give each its own port")
            used[port] = name
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir).resolve()
        if self.gates_stack is not None and not Path(self.gates_stack).is_file():
            raise ValueError(f"--gates-stack: {self.gates_stack} is not a file (e.g. stacks/Pulumi.prod.yaml)")

    def url(self, port_name: str) -> str:
        return f"http://{self.host}:{self.ports[port_name]}"

    @property
    def mlflow_url(self) -> str:
        return self.url("mlflow")

    @property
    def redis_url(self) -> str | None:
        return f"redis://{self.host}:{self.ports['redis']}/0" if self.redis else None

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)


def otlp_endpoint_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The collector for traces: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT."""
    env = os.environ if environ is None else environ
    value = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return value.strip() or None if value else None
