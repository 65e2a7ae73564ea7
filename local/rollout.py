"""Rollouts and shadow traffic on the local platform: the challenger's model server, the splitter, the
rollback rules in the local Prometheus, and the promotion path every other command uses.

- `start`: serves the challenger version on the challenger's model server (started on first use, the
  model reloaded when it runs), then runs ml/delivery/rollout.py's controller against HAProxy and the
  local Prometheus; a challenger that passes becomes champion through ml/training/follow.py's `promote`
  (registry alias, champion slot and the model server together; with the deploy tree, the same call).
- `shadow_start` / `shadow_report` / `shadow_stop`: the mirror process (ml/delivery/mirror.py) and the
  splitter's mirror map.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from contracts import local_platform
from local import prometheus, serving, splitter
from local.config import LocalConfig
from local.services import decide, ensure
from local.supervisor import Supervisor
from local.training import ModelState
from ml.delivery import mirror
from ml.delivery.rollout import Controller, PrometheusAnalyzer, Rollout, RolloutError, StateStore
from ml.delivery.splitter import CHALLENGER
from ml.training.follow import FollowError, Serving, champion_version, promote, served_version

ROLLOUTS_DIR = "rollouts"
CHALLENGER_VERSIONS = "versions.json"


def platform_config(state: str | Path | None = None) -> LocalConfig:
    """The running platform (as `local up` recorded it) as a LocalConfig; raises PlatformNotFound."""
    record = local_platform.find_running(state)
    if "haproxy" not in record.services:
        raise RolloutError(f"the local platform in {record.state_dir} runs no traffic splitter (started with "
                           "--no-splitter, or haproxy is not installed): `mlplat local up` with haproxy installed")
    return LocalConfig(state_dir=record.state_dir, ports=dict(record.ports), models=record.models,
                       redis="redis" in record.services, host=record.host,
                       prometheus="prometheus" in record.services, prometheus_interval_s=_interval(record.state_dir))


def _interval(state: Path) -> int:
    """The scrape interval the platform's Prometheus runs with (the rules' windows scale with it)."""
    try:
        doc = yaml.safe_load((state / "prometheus" / "prometheus.yml").read_text())
        return int(str(doc["global"]["scrape_interval"]).rstrip("s"))
    except (OSError, KeyError, TypeError, ValueError):
        return int(os.environ.get("MLPLAT_PROMETHEUS_INTERVAL_S", "5"))


def _client(cfg: LocalConfig) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.mlflow_url, registry_uri=cfg.mlflow_url)


def ensure_challenger(cfg: LocalConfig, model: str, version: str, say: Callable[[str], None]) -> str:
    """Serve `model` v`version` on the challenger's model server; returns the champion's version."""
    if model not in cfg.models:
        raise RolloutError(f"{model} is not served by this platform (it serves {', '.join(cfg.models)})")
    client = _client(cfg)
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model, version)
    except MlflowException:
        raise RolloutError(f"{model} v{version} is not in the registry at {cfg.mlflow_url}") from None
    champion = champion_version(client, model)
    if champion is None:
        raise RolloutError(f"{model} has no champion to compare with")
    if champion == version:
        raise RolloutError(f"{model} v{version} is already the champion")
    root = cfg.path(splitter.CHALLENGER_DIR)
    root.mkdir(parents=True, exist_ok=True)
    versions_file = root / CHALLENGER_VERSIONS
    versions = json.loads(versions_file.read_text()) if versions_file.is_file() else {}
    versions[model] = version
    states = [ModelState(m, v, False, CHALLENGER, "") for m, v in sorted(versions.items()) if m in cfg.models]
    serving.write_repo(cfg, states, root=root, uris={m.name: f"models:/{m.name}/{m.version}" for m in states},
                       ports=(cfg.ports["challenger_http"], cfg.ports["challenger_grpc"],
                              cfg.ports["challenger_metrics"]))
    versions_file.write_text(json.dumps(versions, indent=1, sort_keys=True))
    sup = Supervisor(cfg.state_dir)
    url = cfg.url("challenger_http")
    if sup.running("challenger") is None:
        say(f"starting the challenger's model server at {url}")
        ensure(cfg, sup, decide(cfg, sup, "challenger"), say, extra_env=serving.server_env(cfg), url=url)
    elif served_version(url, model) != version:
        req = urllib.request.Request(f"{url}/v2/repository/models/{model}/load", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=180):
            pass
    served = served_version(url, model)
    if served != version:
        raise RolloutError(f"the challenger's model server at {url} serves {model} v{served}, expected v{version}; "
                           f"its log: {cfg.path(splitter.CHALLENGER_DIR, 'challenger.log')}")
    say(f"{model} v{version} serves as {CHALLENGER} at {url} ({model} v{champion} is champion)")
    return champion


def _query(base_url: str) -> Callable[[str], list[dict[str, Any]]]:
    def query(promql: str) -> list[dict[str, Any]]:
        url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        if doc.get("status") != "success":
            raise RolloutError(f"Prometheus refused {promql!r}: {doc.get('error')}")
        return list(doc["data"]["result"])

    return query


def store(cfg: LocalConfig) -> StateStore:
    return StateStore(cfg.path(ROLLOUTS_DIR))


def start(cfg: LocalConfig, model: str, version: str, steps: tuple[int, ...], interval_s: float,
          min_requests: int, say: Callable[[str], None] = print, poll_s: float = 1.0) -> Rollout:
    if not cfg.prometheus:
        raise RolloutError("a rollout needs the local Prometheus (its analysis reads the rollback rules' metrics); "
                           "start the platform without --no-prometheus")
    states = store(cfg)
    current = states.load(model)
    if current is not None and current.phase == "running" and _alive(current.pid):
        raise RolloutError(f"a rollout of {model} (v{current.version}) runs already in process {current.pid}; "
                           f"`mlplat rollout status {model}`")
    champion = ensure_challenger(cfg, model, version, say)
    serving_at = Serving(cfg.path(local_platform.SLOTS_DIR), cfg.url("http"))

    def promote_it(name: str, v: str) -> list[str]:
        try:
            return promote(_client(cfg), name, v, serving_at, actor="rollout")
        except FollowError as exc:
            raise RolloutError(f"promotion of {name} v{v} failed: {exc}") from exc

    analyzer = PrometheusAnalyzer(_query(cfg.url("prometheus")), prometheus.local_timing(cfg.prometheus_interval_s))
    rollout = Rollout(model, version, champion, list(steps), interval_s, min_requests)
    return Controller(splitter.splitter(cfg), analyzer, states, promote_it, say=say, poll_s=poll_s).run(rollout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(cfg: LocalConfig, model: str) -> tuple[Rollout | None, dict[str, int] | None, str]:
    """(the recorded rollout, the splitter's live weights, a note on a rollout whose process is gone)."""
    r = store(cfg).load(model)
    live = None
    try:
        live = splitter.splitter(cfg).weights(model)
    except Exception:  # the status still shows the record when the splitter is down
        live = None
    note = ""
    if r is not None and r.phase == "running" and not _alive(r.pid):
        note = (f"the rollout's process {r.pid} is gone (interrupted before it could clean up); "
                f"`mlplat rollout start {model} {r.version}` starts it again")
    return r, live, note


def shadow_start(cfg: LocalConfig, model: str, version: str, percent: int,
                 say: Callable[[str], None] = print) -> float:
    """Mirror `percent` % of `model`'s requests to v`version`; returns the start time (for the report)."""
    ensure_challenger(cfg, model, version, say)
    sup = Supervisor(cfg.state_dir)
    if sup.running("mirror") is None:
        ensure(cfg, sup, decide(cfg, sup, "mirror"), say, url=cfg.url("mirror"))
    began = time.time()
    splitter.splitter(cfg).set_mirror(model, CHALLENGER, percent)
    marker = cfg.path("mirror", f"{model}.json")
    marker.write_text(json.dumps({"model": model, "version": version, "percent": percent, "since": began}))
    say(f"{model}: {percent} % of requests mirrored to {CHALLENGER} v{version} (callers get the champion's answer)")
    return began


def shadow_report(cfg: LocalConfig, model: str) -> dict[str, Any]:
    marker = cfg.path("mirror", f"{model}.json")
    if not marker.is_file():
        raise RolloutError(f"no shadow of {model} was started on this platform (`mlplat rollout shadow {model} V`)")
    meta = json.loads(marker.read_text())
    report = mirror.shadow_report(mirror.Records(cfg.path("mirror", "shadow.db")), model, meta["since"])
    mirrored, percent = splitter.splitter(cfg).mirror(model)
    return {**meta, "mirroring_now": percent, "report": asdict(report), "active": mirrored is not None}


def shadow_stop(cfg: LocalConfig, model: str) -> None:
    splitter.splitter(cfg).set_mirror(model, None, 0)

