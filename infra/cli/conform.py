"""`mlplat conform --stack ENV`: the stack against the real upstream artifacts (docs/CONFORMANCE.md).

Synthesizes the stack offline (or reads `--plan FILE`), renders every Helm release with its pinned
chart and exactly the plan's values, release name and namespace, validates every object against the
Kubernetes OpenAPI of the stack's version and the charts' CRD schemas, reports values keys that
change nothing, wiring, ordering and reachability problems and checkov findings outside the baseline. Prints one
row per release and every problem; exit 1 on any problem, 2 when the charts cannot be had.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from stacks.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conform", help="render every release with its pinned chart and check the stack against "
                                       "the real schemas, values, wiring, ordering and a scanner")
    p.add_argument("--stack", choices=["dev", "staging", "prod"], help="stack to synthesize and check")
    p.add_argument("--plan", type=Path, help="check this preview-shaped plan (`mlplat synth --out`) instead")
    p.add_argument("--mirror", type=Path, help="directory of chart .tgz files (default: $MLPLAT_CHART_MIRROR)")
    p.add_argument("--offline", action="store_true", help="never ask the chart repositories")
    p.add_argument("--no-scan", dest="scan", action="store_false", help="skip checkov")
    p.add_argument("--no-dead-keys", dest="dead_keys", action="store_false",
                   help="skip the values-key analysis (one render per key)")
    p.add_argument("--notes", action="store_true", help="also print notes (keys equal to chart defaults, ...)")
    p.add_argument("--out", type=Path, help="write every checked object as YAML under this directory")
    p.add_argument("--runtime", action="store_true",
                   help="also start every container whose software installs here as its pod declares it and call "
                        "its probes and scrape endpoints (root, bubblewrap; docs/CONFORMANCE.md)")
    p.set_defaults(func=_conform)


def _conform(args: argparse.Namespace) -> int:
    from infra.conformance.charts import ChartSourceError, ChartStore, mirror_from_env
    from infra.conformance.plan import Plan
    from infra.conformance.runner import run

    started = time.perf_counter()
    if args.plan is not None:
        plan = Plan.from_preview(json.loads(args.plan.read_text()))
    elif args.stack is not None:
        from infra.offline.synth import synthesize

        try:
            synthesis = synthesize(args.stack)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        plan = Plan.from_preview(synthesis.to_preview_json())
    else:
        print("mlplat conform: --stack or --plan is required", file=sys.stderr)
        return 2
    store = ChartStore(mirror=args.mirror or mirror_from_env(), online=not args.offline)
    try:
        report = run(plan, store, scan=args.scan, dead_keys=args.dead_keys)
    except ChartSourceError as exc:
        print(f"mlplat conform: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        from infra.conformance.scanner import write_manifests

        write_manifests([o for o in report.objects if not o.derived], args.out)
    if args.runtime:
        from infra.conformance.runtime_contracts import Harness, check
        from infra.conformance.sandbox import SandboxUnavailable

        runtime_started = time.perf_counter()
        try:
            with Harness() as harness:
                runtime = check(report.objects, harness, plan.vpc_cidr)
        except SandboxUnavailable as exc:
            print(f"mlplat conform --runtime: {exc}", file=sys.stderr)
            return 2
        report.problems.extend(runtime.problems)
        report.notes.extend(runtime.notes)
        report.seconds["runtime"] = round(time.perf_counter() - runtime_started, 1)
        print(f"runtime contracts: {runtime.started} pods started here, "
              f"{sum(r.status == 'not run' for r in runtime.rows)} containers not run (reasons below)")
        print(runtime.table())
        made_up = [n.removeprefix("Secret ").split(":")[0] for n in runtime.notes if n.startswith("Secret ")]
        if made_up:
            print(f"  Secret values made up here (the plan redacts the program's Secrets): {', '.join(made_up)}")
    print(f"conformance of stack {plan.stack} (Kubernetes {plan.kubernetes_version}): "
          f"{len(plan.releases)} releases, {report.validated} objects validated")
    print(report.table())
    if args.notes:
        for note in report.notes:
            print(f"  note: {note}")
    for problem in report.problems:
        print(f"  {problem}")
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    verdict = "OK" if report.ok else f"{len(report.problems)} problems"
    print(f"{verdict} in {time.perf_counter() - started:.1f}s ({timing})")
    return 0 if report.ok else 1
