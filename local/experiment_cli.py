"""`mlplat experiment ab|bandit|status|simulate`: A/B tests and bandits on the local platform.

    mlplat experiment ab NAME --challenger V [--split 50] [--min-duration 1h] [--min-samples N |
                          --baseline-rate P [--expected-uplift 0.10]] [--metric success-rate|ctr]
                          [--alpha 0.05] [--power 0.8] [--margin 0.02] [--interval 30s] [--max-duration D]
    mlplat experiment bandit NAME --challenger V [--floor 0.05] [--interval 10s] [--rounds N] [--metric ctr]
    mlplat experiment status NAME [--json]
    mlplat experiment simulate NAME --rates champion=0.30,challenger=0.33 --requests N [--report all|successes]

`ab` and `bandit` run the controller in this process (Ctrl-C stops a bandit; its state stays readable)
against the running platform's splitter (HAProxy) and feedback endpoint; the challenger version is
served by the challenger model server, as a rollout serves it. `status` reads the persisted state from
any process. `simulate` sends requests through the splitter and posts outcomes with known true rates
(ml/delivery/experiments/simulate.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from contracts import local_platform, model_registry
from ml.delivery.experiments import stats
from ml.delivery.experiments.bandit import DEFAULT_FLOOR
from ml.delivery.experiments.controller import METRICS, parse_duration
from ml.delivery.experiments.state import load


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="A/B tests with significance, Thompson-sampling bandits")
    sub = parser.add_subparsers(dest="experiment_command", metavar="ACTION", required=True)
    names = model_registry.names()

    ab = sub.add_parser("ab", help="A/B test a challenger version against the champion; promote it if it wins")
    ab.add_argument("name", choices=names)
    ab.add_argument("--challenger", required=True, help="registry version to test against the champion")
    ab.add_argument("--split", type=int, default=50, help="challenger's percent of traffic (default 50)")
    ab.add_argument("--min-duration", type=duration, default=duration("1h"),
                    help="no decision before this (default 1h): covers daily cycles and late labels")
    ab.add_argument("--min-samples", type=int, help="outcomes per arm before the decision (the horizon)")
    ab.add_argument("--baseline-rate", type=share, help="the champion's expected rate: computes --min-samples "
                                                        "from --expected-uplift, --alpha, --power")
    ab.add_argument("--expected-uplift", type=share, default=0.10,
                    help="relative uplift the test should detect with --power (default 0.10)")
    ab.add_argument("--metric", choices=METRICS, default="success-rate",
                    help="success-rate (default: successes per outcome, labels) or ctr (per request served, clicks)")
    ab.add_argument("--alpha", type=share, default=stats.DEFAULT_ALPHA, help="significance level (default 0.05)")
    ab.add_argument("--power", type=share, default=stats.DEFAULT_POWER, help="power for --min-samples (default 0.8)")
    ab.add_argument("--margin", type=share, default=stats.DEFAULT_MARGIN,
                    help="relative uplift the challenger must beat (default 0.02: better by at least 2 %%)")
    ab.add_argument("--interval", type=duration, default=duration("30s"), help="how often to read outcomes")
    ab.add_argument("--max-duration", type=duration, help="decide with what there is after this long")
    ab.add_argument("--tracking-uri", help="MLflow (default: the running local platform's)")
    ab.add_argument("--metrics-port", type=int, help="serve Prometheus metrics here (default: the platform's "
                                                      "experiments port)")
    ab.set_defaults(func=run_ab)

    bd = sub.add_parser("bandit", help="Thompson sampling between champion and challenger, rewarded by clicks")
    bd.add_argument("name", choices=names)
    bd.add_argument("--challenger", required=True, help="registry version served beside the champion")
    bd.add_argument("--floor", type=share, default=DEFAULT_FLOOR, help="least share per variant (default 0.05)")
    bd.add_argument("--interval", type=duration, default=duration("10s"), help="seconds between weight updates")
    bd.add_argument("--rounds", type=int, help="stop after N rounds (default: until Ctrl-C)")
    bd.add_argument("--metric", choices=METRICS, default="ctr",
                    help="ctr (default: clicks per request served) or success-rate")
    bd.add_argument("--seed", type=int, help="seed of the posterior sampling")
    bd.add_argument("--attribution-window", type=duration, default=duration("0s"),
                    help="with ctr, count a request as an impression only this long after it was served (its "
                         "click window; default 0s: clicks arrive with the answer)")
    bd.add_argument("--metrics-port", type=int, help="serve Prometheus metrics here (default: the platform's "
                                                      "experiments port)")
    bd.set_defaults(func=run_bandit)

    st = sub.add_parser("status", help="weights, counts, posteriors or test statistics, decision")
    st.add_argument("name", choices=names)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)

    sim = sub.add_parser("simulate", help="requests through the splitter, outcomes with known true rates")
    sim.add_argument("name", choices=names)
    sim.add_argument("--rates", required=True, help="true rate per variant, e.g. champion=0.30,challenger=0.33")
    sim.add_argument("--requests", type=int, default=1000)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--concurrency", type=int, default=4)
    sim.add_argument("--report", choices=("all", "successes"), default="all",
                     help="post every outcome (default), or successes only (clicks)")
    sim.add_argument("--body", type=Path, help="V2 request body (default: the smoke request `local up` sent)")
    sim.set_defaults(func=run_simulate)


def plan_of(args: argparse.Namespace) -> stats.Plan:
    min_samples = args.min_samples
    if min_samples is None:
        if args.baseline_rate is None:
            raise SystemExit("mlplat experiment ab: give --min-samples N (outcomes per arm), or --baseline-rate P "
                             "(the champion's current rate) to compute it from --expected-uplift and --power")
        try:
            min_samples = stats.required_samples(args.baseline_rate, args.expected_uplift, margin=args.margin,
                                                 alpha=args.alpha, power=args.power)
        except stats.StatsError as exc:
            raise SystemExit(f"mlplat experiment ab: {exc}") from None
    return stats.Plan(min_samples=min_samples, min_duration_s=args.min_duration, alpha=args.alpha,
                      margin=args.margin, power=args.power)


def run_ab(args: argparse.Namespace) -> int:
    from local.experiments import run_ab_test  # the platform's services: only when a test runs

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    plan = plan_of(args)
    return run_ab_test(args.name, args.challenger, args.metric, plan, split=args.split,
                       interval_s=args.interval, max_duration_s=args.max_duration, tracking_uri=args.tracking_uri,
                       metrics_port=args.metrics_port)


def run_bandit(args: argparse.Namespace) -> int:
    from local.experiments import run_bandit as run

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    return run(args.name, args.challenger, args.metric, floor=args.floor,
               interval_s=args.interval, rounds=args.rounds, seed=args.seed, metrics_port=args.metrics_port,
               attribution_window_s=args.attribution_window)


def run_status(args: argparse.Namespace) -> int:
    from local.experiment_report import format_status

    state = load(local_platform.state_dir(), args.name)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(state), indent=1, sort_keys=True))
    else:
        print(format_status(state))
    return 0 if state.status != "failed" else 1


def run_simulate(args: argparse.Namespace) -> int:
    from local.experiments import simulate_feedback

    result = simulate_feedback(args.name, args.rates, args.requests, seed=args.seed, concurrency=args.concurrency,
                               report=args.report, body_file=args.body)
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0
