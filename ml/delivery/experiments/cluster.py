"""The experiment controllers on the cluster: the same loops, with the Seldon Experiment as the splitter.

    python -m ml.delivery.experiments.cluster bandit MODEL [--feedback-url URL] [--floor 0.05] [--interval 60s]
        [--attribution-window 30m] [--metrics-port 9102] [--state-dir /tmp/experiments] [--namespace seldon]
    python -m ml.delivery.experiments.cluster ab MODEL --champion-version V --challenger-version V
        [--feedback-url URL] --min-samples N [--min-duration 1d] [--split 50] [--tracking-uri URI] ...

`--feedback-url` defaults to the feedback endpoint's in-cluster Service (infra/workloads/feedback.py).

The bandit runs as a Deployment (infra/workloads/experiments.py); its state lives in an emptyDir: a
restarted pod recomputes the posteriors from the feedback endpoint's counts since `--since` (the
experiment's start, fixed in the manifest), so nothing is lost with the pod. An A/B test is a one-off
that ends with a decision: run it as a Job with the same service account. On the cluster it records the
decision in MLflow and puts all traffic back on the champion; the promotion itself is the GitOps path's
(a deploy-tree change, reviewed where the environment requires it), which this process cannot approve.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from contracts.cluster import FEEDBACK_URL
from ml.delivery.experiments import controller as ctl
from ml.delivery.experiments import stats
from ml.delivery.experiments.bandit import DEFAULT_FLOOR
from ml.delivery.experiments.exporter import ExperimentMetrics
from ml.delivery.experiments.record import record_decision
from ml.delivery.experiments.state import ExperimentState
from ml.delivery.feedback_server import FeedbackClient
from ml.delivery.seldon import ExperimentApi, KubernetesExperimentApi, SeldonSplitter

METRICS_PORT = 9102


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml.delivery.experiments.cluster", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    for kind in ("bandit", "ab"):
        s = sub.add_parser(kind)
        s.add_argument("model")
        s.add_argument("--feedback-url", default=FEEDBACK_URL,
                       help=f"the feedback endpoint (default: the in-cluster Service, {FEEDBACK_URL})")
        s.add_argument("--namespace", default="seldon", help="namespace of the Seldon Experiment")
        s.add_argument("--metric", choices=ctl.METRICS, default="ctr" if kind == "bandit" else "success-rate")
        s.add_argument("--metrics-port", type=int, default=METRICS_PORT)
        s.add_argument("--state-dir", type=Path, default=Path("/tmp/experiments"))
        s.add_argument("--since", type=float, help="epoch seconds the experiment started (default: now)")
        s.add_argument("--interval", type=ctl.parse_duration, default=ctl.parse_duration("60s"))
        s.add_argument("--champion-version", default="champion", help="registry version (labels only)")
        s.add_argument("--challenger-version", default="challenger", help="registry version (labels only)")
    bandit = sub.choices["bandit"]
    bandit.add_argument("--floor", type=float, default=DEFAULT_FLOOR)
    bandit.add_argument("--rounds", type=int, help="stop after N rounds (default: run until the pod stops)")
    bandit.add_argument("--attribution-window", type=ctl.parse_duration, default=ctl.parse_duration("0s"),
                        help="with ctr, count a request only this long after it was served (its click window)")
    ab = sub.choices["ab"]
    ab.add_argument("--split", type=int, default=50)
    ab.add_argument("--min-samples", type=int, required=True)
    ab.add_argument("--min-duration", type=ctl.parse_duration, default=ctl.parse_duration("1d"))
    ab.add_argument("--max-duration", type=ctl.parse_duration)
    ab.add_argument("--alpha", type=float, default=stats.DEFAULT_ALPHA)
    ab.add_argument("--margin", type=float, default=stats.DEFAULT_MARGIN)
    ab.add_argument("--tracking-uri", required=True)
    return p


def _promotion_on_cluster(version: str) -> dict[str, Any]:
    return {"promoted": False, "version": version,
            "next": "promote through the deploy tree (GitOps): the decision and its MLflow run are the evidence"}


def main(argv: list[str] | None = None, api: ExperimentApi | None = None) -> int:
    """Run one controller; `api`: the Experiments API (default: the Kubernetes one of the pod's service account)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    splitter = SeldonSplitter(api or KubernetesExperimentApi(), namespace=args.namespace)
    feedback = FeedbackClient(args.feedback_url)
    metrics = ExperimentMetrics()
    metrics.serve(args.metrics_port, host="0.0.0.0")  # scraped by the PodMonitor of the controller
    info = ctl.controller_info(f"http://:{args.metrics_port}/metrics", f"seldon {args.namespace}")
    since = args.since or time.time()
    variants = {ctl.CHAMPION: args.champion_version, ctl.CHALLENGER: args.challenger_version}
    common: dict[str, Any] = {"splitter": splitter, "outcomes": feedback.outcomes, "state_dir": args.state_dir,
                              "metrics": metrics}
    if args.kind == "bandit":
        state = ExperimentState(model=args.model, kind="bandit", variants=variants, metric=args.metric,
                                started_at=since, controller=info)
        settings = ctl.BanditSettings(floor=args.floor, interval_s=args.interval, rounds=args.rounds,
                                      attribution_window_s=args.attribution_window)
        ctl.Bandit(state, settings, **common).run()
        return 0
    from mlflow import MlflowClient  # only the A/B Job records to MLflow

    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    plan = stats.Plan(min_samples=args.min_samples, min_duration_s=args.min_duration, alpha=args.alpha,
                      margin=args.margin)
    test = ctl.ABTest.new(args.model, args.champion_version, args.challenger_version, args.metric,
                          ctl.ABSettings(split=args.split, plan=plan, interval_s=args.interval,
                                         max_duration_s=args.max_duration), info,
                          record=lambda s: record_decision(client, s), promote=_promotion_on_cluster, **common)
    test.state.started_at = since
    decision = test.run()
    print(decision.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
