"""`mlplat capacity`: pods, vCPUs, nodes, Redis shards and monthly cost for a throughput target, beside the
reference fleet in the same units, from a bench report (`mlplat bench models --json FILE`), the stack file and
the dated price table (ml/serving/sizing.py).

    mlplat capacity --tps 1000000 --p99-ms 5 [--bench FILE] [--stack prod] [--models NAME,...]
                    [--utilisation 0.6] [--store-rtt-ms MS] [--json]

The store round trip planned for is --store-rtt-ms, else the one the bench ran its models behind
(`mlplat bench models --rtt-ms X`), else 0.5 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ml.serving.sizing import Assumptions, ImpossibleTarget, capacity, check_target, load_bench, render
from stacks.config import ConfigError, load_stack_file, stack_file

DEFAULT_BENCH = Path("docs/capacity-bench.json")
DEFAULT_STORE_RTT_MS = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("capacity", help="capacity plan (pods, nodes, Redis shards, cost) from a bench report")
    p.add_argument("--tps", type=float, required=True, help="target requests/s")
    p.add_argument("--p99-ms", type=float, required=True, help="latency budget (p99, ms)")
    p.add_argument("--bench", type=Path, default=DEFAULT_BENCH,
                   help=f"`mlplat bench models --json` report (default: {DEFAULT_BENCH}, the run in docs/CAPACITY.md)")
    p.add_argument("--stack", default="prod", help="stack whose inference node group and Redis are used")
    p.add_argument("--models", help="comma-separated subset (default: every model in the report)")
    p.add_argument("--utilisation", type=float, default=0.6, help="share of measured capacity used at peak")
    p.add_argument("--store-rtt-ms", type=float,
                   help="online store round trip on the cluster, per request of models that read it (measure it "
                        "from a pod: `mlplat bench store --url rediss://...`; default: the bench's --rtt-ms, else "
                        f"{DEFAULT_STORE_RTT_MS})")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.tps <= 0 or args.p99_ms <= 0 or not 0 < args.utilisation <= 1 or (args.store_rtt_ms or 0) < 0:
        print("mlplat capacity: --tps and --p99-ms must be > 0, --utilisation in (0, 1], --store-rtt-ms >= 0",
              file=sys.stderr)
        return 2
    if not args.bench.is_file():
        print(f"mlplat capacity: no bench report at {args.bench}; make one with "
              "`mlplat bench models --json FILE`", file=sys.stderr)
        return 2
    try:
        bench = load_bench(args.bench)
    except (OSError, ValueError) as exc:
        print(f"mlplat capacity: {args.bench} is not a bench report: {exc}", file=sys.stderr)
        return 2
    rtt = args.store_rtt_ms
    if rtt is None:
        measured = (bench.get("settings") or {}).get("store_rtt_ms") or []
        rtt = measured[0] if len(measured) == 1 else DEFAULT_STORE_RTT_MS
    assume = Assumptions(utilisation=args.utilisation, store_rtt_ms=rtt)
    try:
        check_target(args.tps, args.p99_ms, assume)
    except ImpossibleTarget as exc:
        print(f"mlplat capacity: impossible target: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = load_stack_file(stack_file(args.stack))
    except (ConfigError, FileNotFoundError) as exc:
        print(f"mlplat capacity: {exc}", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    try:
        result = capacity(bench, args.tps, args.p99_ms, cfg, models, assume=assume)
    except KeyError as exc:
        print(f"mlplat capacity: {exc.args[0]}", file=sys.stderr)
        return 2
    result["bench_file"] = str(args.bench)
    print(json.dumps(result, indent=2) if args.json else render(result))
    missed = [p["model"] for p in result["plans"] if not p["within_budget"]]
    if missed:
        # The plan is printed (it says why), but a target some model cannot meet is not a plan to act on.
        print(f"mlplat capacity: {', '.join(missed)} cannot meet a p99 of {args.p99_ms:g} ms at any load (service "
              "time alone exceeds the budget left after the time outside the server)", file=sys.stderr)
        return 1
    return 0
