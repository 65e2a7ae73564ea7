"""A rollout on the cluster: ml/delivery/rollout.py's controller with the Seldon Experiment as the splitter,
the cluster's Prometheus for the analysis and the deploy tree for the promotion. It runs as a Job
(`mlplat rollout start NAME VERSION --cluster` renders it: contracts/rollout_job.py), so it goes on
when the laptop that started it closes:

    python -m ml.delivery.cluster_rollout MODEL VERSION [--steps 10,50,100] [--interval 5m] [--min-requests 100]

Settings come from the environment (the ConfigMap `rollout-settings` the stack writes, infra/workloads/rollouts.py):
`MLPLAT_DEPLOY` (the deploy tree, as the pipeline's `deploy` parameter), `MLPLAT_PROMETHEUS_URL`,
`MLFLOW_TRACKING_URI`, `MLPLAT_PROMOTION_POLICY` (`governance.promotion`), `MLPLAT_SELDON_NAMESPACE` and
`MLPLAT_RULE_TIMING` (the rollback rules' windows, as the cluster's PrometheusRule evaluates them).

- traffic: JSON merge patches of `<model>-experiment`'s candidate weights, which Argo CD ignores;
- analysis: the rollback rules' PromQL, thresholds and `for` durations (contracts/rollback.py, the cluster's
  timing: the PrometheusRule's), over Prometheus' HTTP API;
- state: the ConfigMap `<model>-rollout` next to the Experiment (key `rollout.json`), rewritten at every change,
  so `mlplat rollout status NAME --cluster` reads it from any machine with read access to it;
- promotion of a challenger that passed every step: the platform's cluster promotion, as the training
  pipeline's publish step does it (ml/delivery/promotion.py): the version's immutable prefix is staged (refused
  before anything is written when the stack's promotion policy is not met), the deploy tree gets the version
  with its model card and gates, a commit (dev, staging) that Argo CD applies or a branch for review (prod),
  and the champion slot and the registry alias `champion` follow only a commit; a proposal leaves them and
  serving as they were until it is merged.

Before any traffic moves: the deploy branch must name VERSION for the challenger slot (Seldon serves it there),
the Experiment must exist with both candidates and Prometheus must answer. SIGTERM (the Job deleted by
`mlplat rollout abort`, a node drained) puts all traffic back on the champion before the process ends.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol

from contracts import rollback
from contracts.cluster import SELDON_NAMESPACE
from contracts.rollout_job import state_name
from ml.delivery import promotion, tree_publish
from ml.delivery.gitops import GitOpsError
from ml.delivery.kube_api import KubeError, KubernetesApi
from ml.delivery.rollout import (
    DEFAULT_STEPS,
    Controller,
    PrometheusAnalyzer,
    Rollout,
    RolloutError,
    format_status,
    parse_duration,
    parse_steps,
)
from ml.delivery.seldon import ExperimentApi, SeldonSplitter, experiment_name
from ml.delivery.splitter import CHALLENGER, CHAMPION, SplitterError

STATE_KEY = "rollout.json"
DEPLOY_ENV = "MLPLAT_DEPLOY"
PROMETHEUS_ENV = "MLPLAT_PROMETHEUS_URL"
POLICY_ENV = "MLPLAT_PROMOTION_POLICY"
NAMESPACE_ENV = "MLPLAT_SELDON_NAMESPACE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
TIMING_ENV = "MLPLAT_RULE_TIMING"
SLOT_DIR_ENV = "MLPLAT_SLOT_DIR"  # a directory bucket instead of S3 (the local platform's slots)
ACTOR = "mlplat rollout (cluster)"


class StateApi(Protocol):
    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_config_map(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


class ConfigMapStore:
    """The rollout's state in the ConfigMap `<model>-rollout` (made empty by the stack; the rollout only patches
    its data, so its Role needs get and patch on that one object)."""

    def __init__(self, api: StateApi, namespace: str = SELDON_NAMESPACE, runner: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.api, self.namespace, self.runner, self.clock = api, namespace, runner, clock

    def save(self, rollout: Rollout) -> None:
        rollout.updated = self.clock()
        doc = asdict(rollout)
        self.api.patch_config_map(self.namespace, state_name(rollout.model),
                                  {"data": {STATE_KEY: json.dumps(doc, indent=1), "runner": self.runner}})

    def load(self, model: str) -> Rollout | None:
        cm = self.api.get_config_map(self.namespace, state_name(model))
        text = (cm.get("data") or {}).get(STATE_KEY)
        return Rollout.from_dict(json.loads(text)) if text else None


def prometheus_query(base_url: str, timeout_s: float = 10) -> Callable[[str], list[dict[str, Any]]]:
    """PromQL -> the result vector of Prometheus' `/api/v1/query`; RolloutError naming the server when it does
    not answer or refuses the query."""
    base = base_url.rstrip("/")

    def query(promql: str) -> list[dict[str, Any]]:
        url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                detail = exc.reason
            raise RolloutError(f"Prometheus at {base} refused {promql!r}: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RolloutError(f"Prometheus at {base} is unreachable ({getattr(exc, 'reason', exc)}): check "
                               f"{PROMETHEUS_ENV} / workloads.rollouts.prometheusUrl and the NetworkPolicy") from None
        if doc.get("status") != "success":
            raise RolloutError(f"Prometheus at {base} refused {promql!r}: {doc.get('error')}")
        return list(doc["data"]["result"])

    return query


def check_prometheus(query: Callable[[str], list[dict[str, Any]]]) -> None:
    """One trivial query: the analysis will be possible."""
    query("vector(1)")


def parse_timing(raw: str) -> rollback.Timing:
    """`cluster` (the PrometheusRule's windows) or a JSON object of `rollback.Timing` fields."""
    if raw == "cluster":
        return rollback.Timing()
    try:
        doc = json.loads(raw)
        known = {f.name for f in fields(rollback.Timing)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        timing = rollback.Timing(**{k: str(v) for k, v in doc.items()})
        for f in fields(rollback.Timing):
            parse_duration(getattr(timing, f.name))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"--rule-timing must be `cluster` or a JSON object of durations: {exc}") from None
    return timing


def served_versions(deploy: tree_publish.Deploy, model: str) -> tuple[str, str]:
    """(champion, challenger) versions the deploy branch gives `model`; RolloutError when the model has no folder
    in the tree or a slot has no release."""
    names = [m.name for m in deploy.models]
    if model not in names:
        raise RolloutError(f"model {model!r} is not enabled in the {deploy.target.environment} stack "
                           f"(enabled: {', '.join(names) or 'none'})")
    try:
        slots = tree_publish.recorded(deploy).get(model, {})
    except GitOpsError as exc:
        raise RolloutError(f"cannot read the deploy tree: {exc}") from exc
    missing = [s for s in (CHAMPION, CHALLENGER) if s not in slots]
    if missing:
        raise RolloutError(f"the deploy branch {deploy.target.branch} names no {' and no '.join(missing)} version of "
                           f"{model}: release one first (`mlplat model promote {model} V --slot SLOT`)")
    return slots[CHAMPION], slots[CHALLENGER]


def check_challenger(deploy: tree_publish.Deploy, model: str, version: str) -> str:
    """The champion's version, once the deploy branch says the challenger slot serves `version`."""
    champion, challenger = served_versions(deploy, model)
    if challenger != str(version):
        raise RolloutError(f"{model}'s challenger slot serves v{challenger} on {deploy.target.branch}, not v{version}: "
                           f"publish v{version} to the challenger slot first (runbook canary-promotion step 1, or "
                           f"`mlplat model promote {model} {version} --slot challenger` after the slot is published); "
                           "in prod merge that change before the rollout")
    if champion == str(version):
        raise RolloutError(f"{model} v{version} is already the champion")
    return champion


def cluster_promotion(deploy_text: str, tracking_uri: str, policy: str, s3_client: Any,
                      actor: str = ACTOR) -> Callable[[str, str], list[str]]:
    """The promotion callable: the version staged, the deploy tree written, and the champion slot and alias moved
    only once the deploy branch names it (ml/delivery/promotion.py; in prod after the review is merged)."""

    def promote(model: str, version: str) -> list[str]:
        try:
            return promotion.promote(promotion.cluster_steps(deploy_text, tracking_uri, policy, s3_client, actor),
                                     model, str(version))
        except promotion.PromotionError as exc:
            raise RolloutError(f"promotion of {model} v{version}: {exc}") from exc

    return promote


class Terminated(Exception):
    """SIGTERM: the Job was deleted or its pod evicted."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("stopped by SIGTERM (`mlplat rollout abort`, or the pod was evicted)")


def run(model: str, version: str, steps: tuple[int, ...], interval_s: float, min_requests: int, *,
        api: ExperimentApi, state_api: StateApi, deploy_text: str, prometheus_url: str,
        promote: Callable[[str, str], list[str]], timing: rollback.Timing, namespace: str = SELDON_NAMESPACE,
        say: Callable[[str], None] = print, poll_s: float = 5.0, runner: str = "",
        sleep: Callable[[float], None] | None = None) -> Rollout:
    """Check everything a rollout needs, then run it; RolloutError (recorded in the state when the state can be
    written) when a precondition fails."""
    deploy = tree_publish.parse_parameter(deploy_text)
    store = ConfigMapStore(state_api, namespace, runner=runner)
    rollout = Rollout(model, version, "?", list(steps), interval_s, min_requests)
    try:
        champion = check_challenger(deploy, model, version)
        rollout.champion_version = champion
        splitter = SeldonSplitter(api, namespace)
        splitter.weights(model)  # the Experiment exists with both candidates
        query = prometheus_query(prometheus_url)
        check_prometheus(query)
    except (RolloutError, SplitterError) as exc:
        rollout.phase, rollout.reason = "failed", f"could not start: {exc}"
        store.save(rollout)
        raise RolloutError(str(exc)) from None
    say(f"{model}: challenger v{version} against champion v{champion} on Experiment "
        f"{namespace}/{experiment_name(model)}; analysis from {prometheus_url}")
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    controller = Controller(splitter, PrometheusAnalyzer(query, timing), store, promote, say=say, poll_s=poll_s,
                            **kwargs)
    return controller.run(rollout)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml.delivery.cluster_rollout", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--steps", type=parse_steps, default=DEFAULT_STEPS)
    p.add_argument("--interval", type=parse_duration, default=parse_duration("5m"))
    p.add_argument("--min-requests", type=int, default=100)
    p.add_argument("--poll", type=parse_duration, default=parse_duration("15s"),
                   help="how often the analysis runs (the cluster's rules evaluate every 30 s)")
    p.add_argument("--rule-timing", type=parse_timing, default=None,
                   help=f"`cluster` (the PrometheusRule's windows) or JSON of contracts/rollback.py Timing (default "
                        f"${TIMING_ENV}, from the stack's settings, else `cluster`)")
    p.add_argument("--slot-dir", type=Path, help=f"a directory bucket instead of S3, as the local platform's slots "
                                                 f"(default ${SLOT_DIR_ENV}; unset: S3 with the pod's identity)")
    return p


def _environment(env: Mapping[str, str]) -> dict[str, str]:
    wanted = {DEPLOY_ENV: "the deploy tree", PROMETHEUS_ENV: "the cluster's Prometheus", TRACKING_ENV: "MLflow"}
    missing = [f"{k} ({what})" for k, what in wanted.items() if not env.get(k)]
    if missing:
        raise RolloutError(f"missing setting(s) {', '.join(missing)}: the Job takes them from the ConfigMap "
                           "rollout-settings that the stack makes with workloads.rollouts.enabled")
    return {k: env[k] for k in wanted}


def main(argv: list[str] | None = None, api: Any = None, env: Mapping[str, str] | None = None) -> int:
    """Exit 0: promoted; 3: stopped or aborted by the analysis (champion back at 100 %); 1: failed."""
    args = parser().parse_args(argv)
    env = os.environ if env is None else env
    if args.min_requests < 1:
        print("--min-requests must be >= 1", file=sys.stderr)
        return 1
    try:
        settings = _environment(env)
        if api is None:
            api = KubernetesApi.connect()
        slot_dir = args.slot_dir or (Path(env[SLOT_DIR_ENV]) if env.get(SLOT_DIR_ENV) else None)
        if slot_dir is not None:
            from ml.training.directory_bucket import DirectoryBucket

            s3: Any = DirectoryBucket(slot_dir)
            bucket = tree_publish.parse_parameter(settings[DEPLOY_ENV]).target.bucket
            if bucket:
                s3.create_bucket(Bucket=bucket)
        else:
            import boto3  # the pod's IRSA identity

            s3 = boto3.client("s3")
        promote = cluster_promotion(settings[DEPLOY_ENV], settings[TRACKING_ENV],
                                    env.get(POLICY_ENV, "gates"), s3)
        timing = args.rule_timing or parse_timing(env.get(TIMING_ENV) or "cluster")
        signal.signal(signal.SIGTERM, _on_sigterm)
        result = run(args.model, args.version, args.steps, args.interval, args.min_requests, api=api, state_api=api,
                     deploy_text=settings[DEPLOY_ENV], prometheus_url=settings[PROMETHEUS_ENV], promote=promote,
                     timing=timing, namespace=env.get(NAMESPACE_ENV, SELDON_NAMESPACE),
                     say=lambda line: print(line, flush=True), poll_s=args.poll,
                     runner=env.get("HOSTNAME", ""))
    except (RolloutError, SplitterError, GitOpsError, KubeError) as exc:
        print(f"rollout of {args.model} v{args.version}: {exc}", file=sys.stderr, flush=True)
        return 1
    except Terminated as exc:
        print(f"rollout of {args.model}: {exc}; champion back at 100 %", file=sys.stderr, flush=True)
        return 1
    print(format_status(result), flush=True)
    return 0 if result.phase == "promoted" else 3


if __name__ == "__main__":
    sys.exit(main())
