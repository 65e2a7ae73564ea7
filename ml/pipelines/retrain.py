"""Retraining on drift: the receiver of the retrain alerts, which starts a run of the model's pipeline.

    python -m ml.pipelines.retrain --mode kfp --host http://ml-pipeline.kubeflow.svc.cluster.local:8888 \
        --config /etc/mlplat/bootstrap/bootstrap.json          (the cluster: Deployment in `kubeflow`)

(the local platform runs the same receiver with a kfp.local starter: local/retrain_receiver.py).

Alerts with the label `action="retrain"` (contracts/pipelines.py `retrain_rule_groups`: the PSI of a
model's inputs against its training reference stayed above the threshold) arrive as Alertmanager
webhooks (`POST /alerts`, the cluster) or straight from Prometheus (`POST /api/v2/alerts`, the local
platform, which runs no Alertmanager). The pattern is the automatic-rollback receiver's
(runbooks/autorollback.py): answer at once, act on a worker thread, one action per model at a time,
every decision listed at `GET /decisions`.

For each firing alert of a registered model the receiver starts a run of `<model>-training` with the
trigger `drift` (the version it registers carries `mlplat.trigger=drift`), unless a run it started for
that model is still going, or the last one finished less than the cool-down ago, or the receiver itself
started less than the cool-down ago (`--cooldown-s`, default one hour: Alertmanager repeats a firing
alert, and a receiver starts together with freshly published versions, which a handful of unusual
requests must not replace at once). The runtime reports no drift before the model has seen the stack's
minimum number of observations (`workloads.pipelines.retrainMinSamples`), so no alert comes before.
The new version goes through the same gates as any other; a failing gate leaves the champion where it
is. Disable it with `MLPLAT_AUTO_RETRAIN=off` or the file `<state>/retrain.paused`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import model_registry
from contracts.pipelines import ACTION_LABEL, RETRAIN_ACTION
from ml.pipelines.kfp_api import run_on_cluster
from ml.serving.alert_receiver import QueuedReceiver, firing, serve

log = logging.getLogger("mlplat.retrain")
DISABLE_ENV = "MLPLAT_AUTO_RETRAIN"
PAUSE_FILE = "retrain.paused"

Starter = Callable[[str], dict[str, Any]]  # model -> what was started (and, locally, how it ended)


class Receiver(QueuedReceiver):
    def __init__(self, starter: Starter, cooldown_s: float = 3600, state_dir: Path | None = None,
                 since: float | None = None) -> None:
        """`since`: when the cool-down starts for models not retrained yet (default: now, the receiver's start)."""
        self.starter = starter
        self.cooldown_s = cooldown_s
        self._since = time.time() if since is None else since
        self._busy: set[str] = set()
        self._last: dict[str, float] = {}
        super().__init__("retrain", DISABLE_ENV, PAUSE_FILE, state_dir)

    def submit(self, alerts: list[dict[str, Any]]) -> int:
        """Queue a run for each firing retrain alert of a registered model; returns how many were accepted."""
        accepted = 0
        known = set(model_registry.names())
        for alert in alerts:
            labels = alert.get("labels") or {}
            model = labels.get("model")
            if labels.get(ACTION_LABEL) != RETRAIN_ACTION or not firing(alert) or model not in known:
                continue
            item = {"alert": labels.get("alertname", "?"), "model": model, "received": time.time(),
                    "starts_at": alert.get("startsAt")}
            with self._lock:
                why = None
                if model in self._busy:
                    why = "a retraining run of this model is still going"
                elif model in self._last and time.time() - self._last[model] < self.cooldown_s:
                    why = f"retrained less than {self.cooldown_s:.0f} s ago (cool-down)"
                elif time.time() - self._since < self.cooldown_s:
                    why = f"the receiver started less than {self.cooldown_s:.0f} s ago (cool-down)"
                if why is None:
                    self._busy.add(model)
            if why is not None:
                item.update(decision="ignored", detail=why, finished=time.time())
                self.decisions.append(item)
                continue
            self._queue.put(item)
            accepted += 1
        return accepted

    def handle(self, item: dict[str, Any]) -> None:
        model = item["model"]
        try:
            why = self.disabled()
            if why:
                item.update(decision="disabled", detail=f"retraining on drift is disabled ({why})")
            else:
                item.update(started=time.time(), decision="running")
                self.decisions.append(item)  # listed while it runs; updated in place when it ends
                item.update(self.starter(model))
                if item["decision"] == "running":
                    item["decision"] = "run started"
        except Exception as exc:  # a failed start must not stop the receiver
            log.exception("retrain %s: %s", model, exc)
            item.update(decision="failed", detail=str(exc))
        finally:
            item["finished"] = time.time()
            with self._lock:
                self._busy.discard(model)
                if item.get("decision") not in ("disabled", "failed"):
                    self._last[model] = item["finished"]
            if not any(d is item for d in self.decisions):
                self.decisions.append(item)
            log.warning("retrain: %s %s: %s", item.get("decision"), model, item.get("detail", ""))




def kfp_starter(host: str, config_path: Path) -> Starter:
    """Start a KFP run of the model's newest pipeline version with the bootstrap's parameters."""
    def start(model: str) -> dict[str, Any]:
        config = json.loads(config_path.read_text())
        entry = config["pipelines"].get(model)
        if entry is None:
            return {"decision": "ignored", "detail": f"{model} has no pipeline on this cluster (disabled?)"}
        started = run_on_cluster(host, model, entry["parameters"], trigger="drift")
        return {"decision": "run started", "detail": f"KFP run {started['run']} ({started['run_id']})", **started}

    return start


def add_receiver_arguments(p: argparse.ArgumentParser) -> None:
    """The options every retrain receiver takes (where it listens, the cool-down, the pause file)."""
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9096)
    p.add_argument("--cooldown-s", type=float, default=float(os.environ.get("MLPLAT_RETRAIN_COOLDOWN_S", 3600)))
    p.add_argument("--state-dir", type=Path, default=Path("."), help="where the pause file is looked for")


def serve_receiver(starter: Starter, args: argparse.Namespace, what: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    receiver = Receiver(starter, cooldown_s=args.cooldown_s, state_dir=args.state_dir)
    return serve(receiver, args.listen, args.port, what)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml.pipelines.retrain", description=__doc__.split("\n\n")[0])
    # One mode on the cluster; the local platform's receiver is local/retrain_receiver.py.
    p.add_argument("--mode", choices=["kfp"], required=True)
    p.add_argument("--host", required=True, help="the KFP API endpoint")
    p.add_argument("--config", type=Path, required=True, help="the bootstrap document (run parameters)")
    add_receiver_arguments(p)
    args = p.parse_args(argv)
    return serve_receiver(kfp_starter(args.host, args.config), args, f"retrain ({args.mode})")


if __name__ == "__main__":
    raise SystemExit(main())
