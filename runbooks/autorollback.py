"""Automatic rollback: the receiver of the rollback alerts, which runs the model-rollback runbook.

    python -m runbooks.autorollback --env local|dev|staging|prod [--port 9095] [--kube cluster]

Alerts with the label `action="rollback"` (contracts/rollback.py) arrive as Alertmanager webhooks
(`POST /alerts`, the cluster: Alertmanager routes them here) or straight from Prometheus
(`POST /api/v2/alerts`, the local platform, which runs no Alertmanager). For each firing alert the
receiver decides whether its version is the candidate:

- the version is the registry's `champion` and an older version exists (a promotion that went bad):
  it runs the `model-rollback` runbook's steps with `--execute` (champion back to the previous
  version, serving follows, every action in the audit log with actor `autorollback/<alert>`);
- on the cluster, the version is `challenger` only and the Seldon Experiment gives it traffic (a
  canary that went bad): the Experiment is set to champion 100 / challenger 0 (audited);
- anything else (an old version, a model being rolled back already) is recorded and ignored.

Rollbacks run one at a time on a worker thread, so a webhook is answered at once. Disable the
receiver with `mlplat:governance.autoRollback.enabled: false` (the cluster then routes no alert
here), or at run time with the environment variable `MLPLAT_AUTO_ROLLBACK=off` or a file
`<state>/autorollback.paused` (both: decisions are recorded as `disabled`, nothing is changed).
`GET /decisions` lists every decision with its timings.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.governance import AuditLog
from contracts.local_platform import SLOTS_DIR
from contracts.rollback import ACTION, ACTION_LABEL
from ml.serving.alert_receiver import QueuedReceiver, firing, serve
from runbooks import deploy_tree
from runbooks.context import RunContext, load_outputs
from runbooks.engine import run
from runbooks.kube import ClusterKubeOps
from runbooks.models import CHALLENGER, CHAMPION, ROLLBACK, experiment_name

log = logging.getLogger("mlplat.autorollback")
DISABLE_ENV = "MLPLAT_AUTO_ROLLBACK"
PAUSE_FILE = "autorollback.paused"


class Receiver(QueuedReceiver):
    def __init__(self, make_context: Callable[[dict[str, str]], RunContext], audit: AuditLog,
                 state_dir: Path | None = None) -> None:
        self.make_context = make_context
        self.audit = audit
        self._handled: set[tuple[str, str]] = set()
        super().__init__("autorollback", DISABLE_ENV, PAUSE_FILE, state_dir)

    # ---- intake ---------------------------------------------------------------------------------

    def submit(self, alerts: list[dict[str, Any]]) -> int:
        """Queue the firing rollback alerts; returns how many were accepted."""
        accepted = 0
        for alert in alerts:
            labels = alert.get("labels") or {}
            if labels.get(ACTION_LABEL) != ACTION or not firing(alert):
                continue
            model, version = labels.get("model"), labels.get("version")
            if not model or not version:
                continue
            with self._lock:
                if (model, version) in self._handled:
                    continue
                self._handled.add((model, version))
            self._queue.put({"alert": labels.get("alertname", "?"), "trigger": labels.get("trigger"),
                             "model": model, "version": version, "received": time.time(),
                             "starts_at": alert.get("startsAt")})
            accepted += 1
        return accepted

    # ---- decisions --------------------------------------------------------------------------------

    def handle(self, item: dict[str, Any]) -> None:
        try:
            self._decide(item)
        except Exception as exc:  # a bad alert must not stop the receiver
            log.exception("autorollback: %s", exc)
            item.update(decision="failed", detail=str(exc), finished=time.time())
            self.decisions.append(item)

    def _decide(self, item: dict[str, Any]) -> None:
        model, version = item["model"], item["version"]
        actor = f"autorollback/{item['alert']}"
        why = self.disabled()
        if why:
            self._done(item, "disabled", f"automatic rollback is disabled ({why}); nothing changed", actor)
            return
        ctx = self.make_context({"model": model})
        ctx.actor = actor
        champion = _serving_champion(ctx, model)
        challenger = _alias(ctx, model, CHALLENGER)
        versions = sorted(int(v.version) for v in ctx.mlflow.search_model_versions(f"name='{model}'"))
        if champion == version and any(v < int(version) for v in versions):
            out = io.StringIO()
            item["started"] = time.time()
            report = run(ROLLBACK, ctx, execute=True, audit=self.audit, out=out)
            item["runbook_output"] = out.getvalue().splitlines()
            decision = "rolled back" if report.ok else "rollback failed"
            self._done(item, decision, f"{model}@champion v{version} -> v{ctx.state.get('to_version')}", actor)
            with self._lock:  # a later breach of the restored version may act again
                self._handled.discard((model, str(ctx.state.get("to_version"))))
            return
        if ctx.kube is not None and challenger == version and champion != version:
            weights = ctx.kube.experiment_weights("seldon", experiment_name(model))
            if weights.get(f"{model}-{CHALLENGER}", 0) > 0:
                item["started"] = time.time()
                new = {f"{model}-{CHAMPION}": 100, f"{model}-{CHALLENGER}": 0}
                ctx.kube.set_experiment_weights("seldon", experiment_name(model), new)
                self._done(item, "canary stopped", f"Experiment seldon/{experiment_name(model)} {weights} -> {new}",
                           actor)
                return
        self._done(item, "ignored", f"v{version} is not the candidate (champion v{champion}, challenger "
                                    f"v{challenger}); nothing changed", actor)

    def _done(self, item: dict[str, Any], decision: str, detail: str, actor: str) -> None:
        item.update(decision=decision, detail=detail, finished=time.time())
        self.decisions.append(item)
        log.warning("autorollback: %s %s v%s (%s): %s", decision, item["model"], item["version"], item["alert"],
                    detail)
        if decision not in ("rolled back", "rollback failed"):  # the runbook audits its own steps
            self.audit.record(actor=actor, env="-", runbook="autorollback", step=decision,
                              target=f"models:/{item['model']}/{item['version']}", result="ok", details=detail)


def _serving_champion(ctx: RunContext, model: str) -> str | None:
    """The champion that serves: on a GitOps cluster the deploy branch's (the receiver's `MLPLAT_DEPLOY`), as the
    registry alias follows the branch only after a merge was followed (ml/delivery/promotion.py) and may lag; else,
    and while the branch names none, the alias."""
    alias = _alias(ctx, model, CHAMPION)
    if ctx.env == "local" or not os.environ.get(deploy_tree.DEPLOY_ENV):
        return alias
    deploy = deploy_tree.deploy_of(ctx, model)
    served = deploy_tree.tree_version(deploy, model, CHAMPION) if deploy is not None else None
    return served or alias


def _alias(ctx: RunContext, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(ctx.mlflow.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runbooks.autorollback", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="local", choices=["local", "dev", "staging", "prod"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9095)
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    p.add_argument("--serving-url", default=os.environ.get("MLPLAT_SERVING_URL"))
    p.add_argument("--kube", choices=["none", "cluster"], default="none")
    p.add_argument("--outputs", type=Path, help="`pulumi stack output --json` (cluster: buckets.models)")
    p.add_argument("--state-dir", type=Path, default=Path("."), help="where the pause file is looked for")
    p.add_argument("--audit-log", type=Path, default=None, help="default $MLPLAT_AUDIT_LOG or .local/...")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kube = None
    if args.kube == "cluster":
        kube = ClusterKubeOps()

    outputs = load_outputs(args.outputs)

    def make_context(params: dict[str, str]) -> RunContext:
        return RunContext(env=args.env, stack_outputs=outputs, params=dict(params), kube=kube,
                          tracking_uri=args.tracking_uri, serving_url=args.serving_url,
                          slot_dir=args.state_dir / SLOTS_DIR if args.env == "local" else None)

    # Import the MLflow client now, not when the first alert arrives (seconds on a busy machine).
    from mlflow.tracking import MlflowClient  # noqa: F401

    receiver = Receiver(make_context, AuditLog(args.audit_log), state_dir=args.state_dir)
    return serve(receiver, args.host, args.port, f"autorollback (env {args.env})")


if __name__ == "__main__":
    raise SystemExit(main())
