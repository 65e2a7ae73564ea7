"""MLServer of the local platform: one process serving the three models from the MLflow registry.

The repository layout comes from `common/serving/settings.py` (shared with tests and benchmarks);
here each model points at its registry alias (`models:/<name>@champion`), the runtimes get the
tracking URI (and the Redis URL with `--redis`), and tracing is switched on only when an OTLP
collector is configured: MLServer's `tracing_server` (OTLP gRPC) gets the collector's host:port.
Without a collector, no exporter is created at all, so nothing logs export errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

from contracts import model_registry
from local.config import LocalConfig
from local.training import ModelState
from ml.serving.settings import ModelEntry, write_repository

SERVER_NAME = "mlplat-local"


def tracing_server(endpoint: str | None) -> str | None:
    """host:port for MLServer's OTLP gRPC exporter from an OTEL_EXPORTER_OTLP_ENDPOINT-style value."""
    if not endpoint:
        return None
    parsed = urlparse(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    if not parsed.hostname:
        raise ValueError(f"OTLP endpoint {endpoint!r} has no host; expected e.g. http://127.0.0.1:4317")
    return f"{parsed.hostname}:{parsed.port or 4317}"


def write_repo(cfg: LocalConfig, models: list[ModelState], root: Path | None = None,
               ports: tuple[int, int, int] | None = None, uris: dict[str, str] | None = None) -> Path:
    """(Re)write `<state>/mlserver/` for `models`; stale model folders of an earlier run are removed.
    `root`, `ports` (http, grpc, metrics) and `uris` (model -> URI instead of its alias) serve another
    server the same way: the challenger's (local/traffic.py)."""
    root = root or cfg.path("mlserver")
    http, grpc, metrics = ports or (cfg.ports["http"], cfg.ports["grpc"], cfg.ports["metrics"])
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        if child.is_dir() and (child / "model-settings.json").is_file():
            shutil.rmtree(child)
    extra: dict[str, object] = {"tracking_uri": cfg.mlflow_url, "drift_min_samples": cfg.drift_min_samples}
    if cfg.redis_url:
        extra["redis_url"] = cfg.redis_url
        extra["prediction_cache_ttl_s"] = cfg.prediction_cache_ttl_s  # the cache lives in the same redis-server
    entries = [ModelEntry(m.name, m.name, (uris or {}).get(m.name, m.uri), dict(extra)) for m in models]
    if uris is None:  # the champion's server: a model's explainer serves beside it from the same registry alias
        entries += [ModelEntry(name, name, m.uri, dict(extra)) for m in models
                    if (name := explainer_of(m.name)) is not None]
    write_repository(root, entries, http_port=http, grpc_port=grpc, metrics_port=metrics, parallel_workers=0,
                     host=cfg.host)
    settings_path = root / "settings.json"
    settings = json.loads(settings_path.read_text())
    settings["server_name"] = SERVER_NAME
    settings["metrics_endpoint"] = "/metrics"
    server = tracing_server(cfg.otlp_endpoint)
    if server:
        settings["tracing_server"] = server
    settings_path.write_text(json.dumps(settings, indent=1))
    return root


def explainer_of(model: str) -> str | None:
    """The served name of `model`'s explainer, or None (a plugin model outside the registry has none)."""
    return model_registry.get(model).explainer_name if model in model_registry.names() else None


def served_identity(cfg: LocalConfig, models: list[ModelState]) -> dict[str, object]:
    """What a running MLServer must match to be reused: versions served, ports, tracing, store."""
    return {
        "models": {m.name: f"{m.alias}:v{m.version}" for m in models},
        "tracing": tracing_server(cfg.otlp_endpoint),
        "redis": cfg.redis_url,
        "mlflow": cfg.mlflow_url,
        "drift_min_samples": cfg.drift_min_samples,
    }


def server_env(cfg: LocalConfig) -> dict[str, str]:
    # Sampled serving inputs for `mlplat model drift` (ml/serving/serving_log.py).
    # Every row locally (little traffic: a report after N requests sees N rows); the cluster samples 10 %.
    env = {"MLFLOW_TRACKING_URI": cfg.mlflow_url, "MLPLAT_SERVING_SAMPLES": str(cfg.path("serving-samples")),
           "MLPLAT_SERVING_SAMPLE_RATE": "1.0"}
    if not cfg.otlp_endpoint:
        # Make "off" explicit for any OpenTelemetry SDK a dependency might initialise on its own.
        env["OTEL_SDK_DISABLED"] = "true"
        env["OTEL_TRACES_EXPORTER"] = "none"
    return env
