"""Rollouts and shadow traffic on the local platform: the challenger's model server, the splitter, the
rollback rules in the local Prometheus, and the promotion path every other command uses.

- `start`: serves the challenger version on the challenger's model server (local/challenger.py), then runs
  ml/delivery/rollout.py's controller against HAProxy and the local Prometheus; a challenger that passes
  is promoted as on the cluster: the deploy tree's git change (ml/delivery/gitops.py, card and gates in
  the commit), then the tree applied to the platform (local/deploy_apply.py, Argo CD's part: registry
  alias, champion slot and the model server together, ml/training/follow.py).
- `shadow_start` / `shadow_report` / `shadow_stop`: the mirror process (ml/delivery/mirror.py) and the
  splitter's mirror map.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from contracts import local_platform
from local import challenger, deploy_apply, prometheus, traffic
from local.challenger import ChallengerError
from local.config import LocalConfig
from local.services import decide, ensure
from local.supervisor import Supervisor
from ml.delivery import mirror
from ml.delivery.gitops import GitOpsError
from ml.delivery.rollout import Controller, PrometheusAnalyzer, Rollout, RolloutError, StateStore
from ml.delivery.splitter import CHALLENGER, CHAMPION, split
from ml.training.follow import FollowError
from stacks.schema import PlatformConfig

ROLLOUTS_DIR = "rollouts"


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
    """local/challenger.py's `ensure_challenger` (returns the champion's version), failing with RolloutError as
    everything else in this module (the experiment commands call it too)."""
    try:
        return challenger.ensure_challenger(cfg, model, version, say)
    except ChallengerError as exc:
        raise RolloutError(str(exc)) from exc


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
          min_requests: int, say: Callable[[str], None] = print, poll_s: float = 1.0,
          stack: PlatformConfig | None = None) -> Rollout:
    if not cfg.prometheus:
        raise RolloutError("a rollout needs the local Prometheus (its analysis reads the rollback rules' metrics); "
                           "start the platform without --no-prometheus")
    states = store(cfg)
    current = states.load(model)
    if current is not None and current.phase == "running" and _alive(current.pid):
        raise RolloutError(f"a rollout of {model} (v{current.version}) runs already in process {current.pid}; "
                           f"`mlplat rollout status {model}`")
    try:
        deploy_apply.check_releasable(cfg, model, version)  # fail before any traffic moves, not after
    except LookupError as exc:
        raise RolloutError(f"{exc}; its promotion (a deploy-tree commit with the card) would fail") from None
    champion = ensure_challenger(cfg, model, version, say)
    stack = stack or deploy_apply.stack_config(None)

    def promote_it(name: str, v: str) -> list[str]:
        """The promotion path: the deploy tree's git change, then the tree applied (what Argo CD does on the
        cluster); where the stack wants review, the change waits on its branch and the champion stays."""
        try:
            outcome = deploy_apply.release(cfg, stack, name, v, actor="mlplat rollout")
            applied = deploy_apply.apply(cfg, stack, say)
        except (FollowError, GitOpsError, ChallengerError) as exc:
            raise RolloutError(f"promotion of {name} v{v} failed: {exc}") from exc
        return [outcome.message, *(a for x in applied for a in x.actions)]

    analyzer = PrometheusAnalyzer(_query(cfg.url("prometheus")), prometheus.local_timing(cfg.prometheus_interval_s))
    rollout = Rollout(model, version, champion, list(steps), interval_s, min_requests)
    return Controller(traffic.splitter(cfg), analyzer, states, promote_it, say=say, poll_s=poll_s).run(rollout)


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
        live = traffic.splitter(cfg).weights(model)
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
    traffic.splitter(cfg).set_mirror(model, CHALLENGER, percent)
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
    mirrored, percent = traffic.splitter(cfg).mirror(model)
    return {**meta, "mirroring_now": percent, "report": asdict(report), "active": mirrored is not None}


def shadow_stop(cfg: LocalConfig, model: str) -> None:
    traffic.splitter(cfg).set_mirror(model, None, 0)



def abort(cfg: LocalConfig, model: str, timeout_s: float = 30) -> Rollout:
    """Stop a running rollout: its process gets SIGINT and hands the traffic back itself (`failed`); when the
    process is gone the weights are reset here and the record says `aborted`."""
    states = store(cfg)
    r = states.load(model)
    if r is None:
        raise RolloutError(f"no rollout of {model} recorded in {cfg.state_dir}")
    if r.phase != "running":
        return r
    if _alive(r.pid):
        os.kill(r.pid, signal.SIGINT)  # the controller hands the traffic back and records its end
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.2)
            current = states.load(model)
            if current is not None and current.phase != "running":
                r = current
                break
    traffic.splitter(cfg).set_weights(model, split(model, 0))
    r.phase, r.reason = "aborted", f"aborted by mlplat rollout abort; {CHAMPION} back at 100 %"
    r.shares = split(model, 0)
    states.save(r)
    return r
