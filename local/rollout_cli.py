"""`mlplat rollout`: progressive delivery and shadow traffic on the running local platform.

    mlplat rollout start NAME VERSION [--steps 10,50,100] [--interval 30s] [--min-requests 20] [--stack-file F]
    mlplat rollout status NAME [--json]
    mlplat rollout abort NAME
    mlplat rollout start|status|abort ... --cluster [--context CTX]   (the rollout runs as a Job in the cluster)
    mlplat rollout shadow NAME VERSION [--percent 10]
    mlplat rollout shadow-report NAME [--json]
    mlplat rollout shadow-stop NAME

`start` runs in the foreground until the rollout ends and exits 0 when the challenger became champion,
3 when the analysis stopped it (traffic back on the champion), 1 on an error. The platform is the one
`mlplat local up` recorded (state directory $MLPLAT_LOCAL_DIR, else .local/). With `--cluster` the same
controller runs as a Job in the cluster of the kubeconfig (ml/delivery/rollout_cluster_cli.py); `start` then
follows it until it ends (or returns at once with `--detach`), and the rollout goes on if the terminal closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from contracts import local_platform
from local import rollout_cluster_main
from ml.delivery.rollout import DEFAULT_STEPS, RolloutError, format_status, parse_duration, parse_steps
from ml.delivery.splitter import SplitterError

EXIT_STOPPED = 3
LOCAL_INTERVAL, CLUSTER_INTERVAL = "30s", "10m"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rollout", help="canary rollouts with automatic analysis, shadow traffic "
                                                   "(local platform)")
    sub = parser.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    st = sub.add_parser("start", help="move the challenger's share step by step, analysed at each step")
    st.add_argument("name")
    st.add_argument("version")
    st.add_argument("--steps", type=parse_steps, default=DEFAULT_STEPS, help="challenger shares in %% (10,50,100)")
    st.add_argument("--interval", type=parse_duration, default=None,
                    help="how long each step runs before it may pass (30s, 2m, ...; default 30s locally, 10m with "
                         "--cluster: longer than the cluster rules' `for`, 5m for latency)")
    st.add_argument("--min-requests", type=int, default=20,
                    help="challenger answers a step needs before it may pass (default 20)")
    st.add_argument("--stack-file", type=Path, default=None,
                    help="the stack whose deploy tree a passing challenger is released to (default "
                         "stacks/Pulumi.dev.yaml; one with pull-request promotion leaves a branch to review)")
    st.add_argument("--detach", action="store_true", help="--cluster: return once the Job is created")
    st.add_argument("--poll", type=parse_duration, default=None,
                    help="--cluster: how often the analysis runs (default 15s; the cluster's rules evaluate every 30s)")
    _cluster_flags(st)
    st.set_defaults(func=_start)
    ss = sub.add_parser("status", help="step, shares and the analysis of a model's rollout")
    ss.add_argument("name")
    ss.add_argument("--json", action="store_true")
    _cluster_flags(ss)
    ss.set_defaults(func=_status)
    sa = sub.add_parser("abort", help="stop a model's rollout: all traffic back on the champion")
    sa.add_argument("name")
    _cluster_flags(sa)
    sa.set_defaults(func=_abort)
    sh = sub.add_parser("shadow", help="mirror a share of live traffic to a challenger (callers get the champion)")
    sh.add_argument("name")
    sh.add_argument("version")
    sh.add_argument("--percent", type=int, default=10, help="share of requests mirrored (default 10)")
    sh.set_defaults(func=_shadow)
    sr = sub.add_parser("shadow-report", help="agreement, latency and errors of the shadow against the champion")
    sr.add_argument("name")
    sr.add_argument("--json", action="store_true")
    sr.set_defaults(func=_shadow_report)
    sx = sub.add_parser("shadow-stop", help="stop mirroring")
    sx.add_argument("name")
    sx.set_defaults(func=_shadow_stop)


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", action="store_true",
                        help="the cluster of the kubeconfig instead of the local platform (the rollout runs as a Job)")
    parser.add_argument("--context", help="--cluster: the kubeconfig context (default: the current one)")


def _cfg(command: str) -> Any:
    # The local platform's modules import MLflow and the serving stack: loaded when a command runs.
    from local import rollout_runner

    try:
        cfg = rollout_runner.platform_config()
    except (local_platform.PlatformNotFound, RolloutError) as exc:
        print(f"mlplat rollout {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"mlplat rollout {command}: local platform in {cfg.state_dir}", file=sys.stderr, flush=True)
    return rollout_runner, cfg


def _say(line: str) -> None:
    print(line, flush=True)


def _local(command: str, call: Callable[[Any, Any], Any]) -> tuple[bool, Any]:
    """`call(rollout_runner, cfg)` on the running local platform: (True, its result), or (False, None) once the
    failure is printed as `mlplat rollout COMMAND: why`."""
    rollout_runner, cfg = _cfg(command)
    try:
        return True, call(rollout_runner, cfg)
    except (RolloutError, SplitterError, ValueError) as exc:
        print(f"mlplat rollout {command}: {exc}", file=sys.stderr)
        return False, None


def _start(args: argparse.Namespace) -> int:
    if args.min_requests < 1:
        print("mlplat rollout start: --min-requests must be >= 1", file=sys.stderr)
        return 2
    if args.interval is None:
        args.interval = parse_duration(CLUSTER_INTERVAL if args.cluster else LOCAL_INTERVAL)
    if args.cluster:
        return rollout_cluster_main.start(args)

    def start(rollout_runner: Any, cfg: Any) -> Any:
        from local import deploy_apply  # with the platform's modules (_cfg)

        return rollout_runner.start(cfg, args.name, args.version, args.steps, args.interval, args.min_requests,
                                    say=_say, stack=deploy_apply.stack_config(args.stack_file))

    ok, result = _local("start", start)
    if not ok:
        return 1
    print(format_status(result))
    return 0 if result.phase == "promoted" else EXIT_STOPPED


def _status(args: argparse.Namespace) -> int:
    if args.cluster:
        return rollout_cluster_main.status(args)
    rollout_runner, cfg = _cfg("status")
    r, live, note = rollout_runner.status(cfg, args.name)
    if r is None:
        print(f"mlplat rollout status: no rollout of {args.name} recorded in {cfg.state_dir}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**asdict(r), "live_shares": live, "note": note}, indent=1))
    else:
        print(format_status(r, live) + (f"\nnote: {note}" if note else ""))
    return 0


def _abort(args: argparse.Namespace) -> int:
    if args.cluster:
        return rollout_cluster_main.abort(args)
    ok, r = _local("abort", lambda rr, cfg: rr.abort(cfg, args.name))
    if not ok:
        return 1
    print(format_status(r))
    return 0


def _shadow(args: argparse.Namespace) -> int:
    ok, _ = _local("shadow", lambda rr, cfg: rr.shadow_start(cfg, args.name, args.version, args.percent, say=_say))
    if not ok:
        return 1
    print(f"`mlplat rollout shadow-report {args.name}` compares the answers; `mlplat rollout shadow-stop "
          f"{args.name}` ends the mirroring")
    return 0


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "no data"
    return f"{v:.1%}" if unit == "%" else f"{v:.1f} ms"


def _shadow_report(args: argparse.Namespace) -> int:
    ok, doc = _local("shadow-report", lambda rr, cfg: rr.shadow_report(cfg, args.name))
    if not ok:
        return 1
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    r = doc["report"]
    print(f"shadow of {args.name}: challenger v{doc['version']}, {doc['percent']} % mirrored "
          f"({'active' if doc['active'] else 'stopped'})")
    print(f"compared requests: {r['mirrored']} (copies dropped: {r['dropped']})")
    print(f"agreement with the champion: {_fmt(r['agreement'], '%')}")
    print(f"{'':12}{'p50':>10}{'p99':>10}{'errors':>9}")
    for side in ("champion", "challenger"):
        print(f"{side:12}{_fmt(r[f'{side}_p50_ms']):>10}{_fmt(r[f'{side}_p99_ms']):>10}"
              f"{_fmt(r[f'{side}_error_rate'], '%'):>9}")
    return 0


def _shadow_stop(args: argparse.Namespace) -> int:
    ok, _ = _local("shadow-stop", lambda rr, cfg: rr.shadow_stop(cfg, args.name))
    if not ok:
        return 1
    print(f"{args.name}: mirroring stopped")
    return 0
